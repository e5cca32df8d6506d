"""The argument parser of ``python -m ptycho`` (its commands and flags; see ptycho.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ptycho.config import ACTIVATIONS, INPUT_TRANSFORMS, LR_SCHEDULES, TrainConfig
from ptycho.refine import LOSSES, RefineConfig

__all__ = ["MODEL_FLAGS", "build_parser"]

# train's flags of the model itself (ModelConfig fields); with --init-model they come from the archive
MODEL_FLAGS = ("loss", "n_filters_scale", "activation", "input_transform", "balance_counts",
               "pad_object", "jit_compile", "mixed_precision")


def _flag(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(f"--{name}", default=None, action=argparse.BooleanOptionalAction,
                        help=help_text + " (default: fastest for the device)")


def _grouping_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("canonical (per-position) data")
    group.add_argument("--gridsize", type=int, default=None,
                       help="patterns per group side (train default 2; infer: the model's)")
    group.add_argument("--n-groups", type=int, default=None,
                       help="number of groups (default: one per scan position)")
    group.add_argument("--neighbors", type=int, default=None,
                       help="nearest positions a group is drawn from (default: those within the "
                            "probe's illumination radius, at least max(7, gridsize²))")
    group.add_argument("--nphotons", type=float, default=None,
                       help="mean photons per pattern (default: file metadata, else estimated "
                            "from the count quantisation, else 1e9)")
    _units_flags(group)


def _units_flags(group: Any) -> None:
    """--intensity / --amplitude → args.intensity True / False / None (decided from the data)."""
    units = group.add_mutually_exclusive_group()
    units.add_argument("--intensity", dest="intensity", action="store_const", const=True, default=None,
                       help="the file holds intensities (counts), not amplitudes")
    units.add_argument("--amplitude", dest="intensity", action="store_const", const=False,
                       help="the file holds amplitudes (sqrt of intensity); default: decided "
                            "from the data (integer dtype or count quantisation), else amplitudes "
                            "with a warning")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ptycho",
        description="ptycho-harness: simulate, train, infer and reconstruct ptychography data sets")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="simulate a data set and write it (NPZ/HDF5)")
    sim.add_argument("--output", required=True, type=Path, help="output .npz/.h5 path")
    sim.add_argument("--config", type=Path, help="SimConfig YAML/JSON (flags override it)")
    sim.add_argument("--N", type=int)
    sim.add_argument("--gridsize", type=int)
    sim.add_argument("--nphotons", type=float)
    sim.add_argument("--n-images", type=int)
    sim.add_argument("--object-type", choices=("lines", "random", "disk"))
    sim.add_argument("--probe-scale", type=float)
    sim.add_argument("--probe-defocus", type=float, help="probe defocus: quadratic phase at the disk edge (rad)")
    sim.add_argument("--object-size", type=int)
    sim.add_argument("--seed", type=int)
    sim.add_argument("--format", choices=("grouped", "canonical"), default="grouped",
                     help="grouped: this project's (B,N,N,C) layout; canonical: PtychoPINN's "
                          "per-position layout (no photon count in the arrays)")

    tr = sub.add_parser("train", help="train a model on a data set")
    tr.add_argument("--data", required=True, type=Path)
    tr.add_argument("--output-dir", required=True, type=Path)
    tr.add_argument("--nepochs", type=int, default=50)
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate,
                    help=f"Adam learning rate, the peak of the cosine (default "
                         f"{TrainConfig.learning_rate:g})")
    tr.add_argument("--init-model", type=Path, default=None,
                    help="start from this archive's weights and configuration instead of a new "
                         "model (fine-tuning, e.g. self-supervised on the scan to reconstruct); "
                         "the data must have its N, gridsize and probe, and the model flags "
                         "below come from the archive")
    tr.add_argument("--loss", choices=("nll", "mae"), default=None, help="default nll")
    tr.add_argument("--n-filters-scale", type=int, default=None)
    tr.add_argument("--activation", choices=ACTIVATIONS, default=None,
                    help="CNN hidden-layer activation (default leaky_relu)")
    tr.add_argument("--input-transform", choices=INPUT_TRANSFORMS, default=None,
                    help="what the CNN sees (default both: the amplitudes and their per-pixel "
                         "standardisation; linear: the model before RESOLUTION-LOSS-001)")
    tr.add_argument("--balance-counts", type=float, default=None,
                    help="ring balance of the NLL: pixels above this many mean counts are weighted "
                         "down to it (default 100; 0: the plain NLL)")
    tr.add_argument("--pad-object", default=None, action=argparse.BooleanOptionalAction,
                    help="the decoders predict the central N/2 × N/2 of each object patch, zero "
                         "outside (default: while the probe's light outside it gives fewer than "
                         "100·N² photons per pattern, ptycho.probe.half_support_fits; else the "
                         "whole N × N)")
    tr.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=TrainConfig.lr_schedule,
                    help="learning rate over the run: constant, or a cosine decay from "
                         "--learning-rate to --lr-final-fraction of it "
                         f"(default {TrainConfig.lr_schedule})")
    tr.add_argument("--lr-final-fraction", type=float, default=TrainConfig.lr_final_fraction,
                    help=f"the cosine's last learning rate, a fraction of --learning-rate "
                         f"(default {TrainConfig.lr_final_fraction:g})")
    tr.add_argument("--clipnorm", type=float, default=1.0,
                    help="clip each step's global gradient norm to this (default 1; 0: off)")
    tr.add_argument("--seed", type=int, default=0, help="model init, shuffling and grouping seed")
    _grouping_flags(tr)
    _flag(tr, "jit-compile", "whole-step XLA compilation")
    _flag(tr, "mixed-precision", "bfloat16 CNN")

    inf = sub.add_parser("infer", help="reconstruct an object with a trained model")
    inf.add_argument("--model", required=True, type=Path, help="wts.h5.zip archive")
    inf.add_argument("--data", required=True, type=Path)
    inf.add_argument("--output-dir", required=True, type=Path)
    inf.add_argument("--batch-size", type=int, default=64)
    inf.add_argument("--seed", type=int, default=0, help="grouping seed (canonical data)")
    inf.add_argument("--canonical-out", type=Path, default=None,
                     help="also write the reconstruction as a canonical NPZ/HDF5 "
                          "(objectGuess = the stitched object)")
    inf.add_argument("--fit-slopes", default=True, action=argparse.BooleanOptionalAction,
                     help="fit each patch's amplitude constant and amplitude and phase slopes to "
                          "its own pattern, in the fraction whose object best predicts held-out "
                          "patterns, then once more to patches cut from the stitched object when "
                          "that predicts them better (ptycho.patch_slopes; default on). "
                          "--no-fit-slopes: the network's patches, phase-aligned only")
    inf.add_argument("--refine-steps", type=int, default=0,
                     help="then refine the stitched object by this many full-batch Adam steps "
                          "against the patterns, known probe and positions (ptycho.refine; "
                          "default 0: the PINN alone). The result is 'PINN + refinement', a "
                          "solver's result; metrics.json keeps the PINN alone's scores beside it")
    inf.add_argument("--refine-loss", choices=LOSSES, default=RefineConfig.loss,
                     help=f"refinement misfit (default {RefineConfig.loss})")
    inf.add_argument("--refine-lr", type=float, default=RefineConfig.learning_rate,
                     help=f"refinement Adam step size (default {RefineConfig.learning_rate:g})")
    inf.add_argument("--refine-holdout", type=float, default=RefineConfig.holdout,
                     help="fraction of the patterns left out of the refinement to stop it where "
                          "they are predicted best (default "
                          f"{RefineConfig.holdout:g}; 0: fit all, keep the last step)")
    _grouping_flags(inf)

    rec = sub.add_parser("reconstruct", help="iterative baseline reconstruction (pty-chi; needs "
                                             "the [baseline] extra: make baseline)")
    rec.add_argument("--engine", choices=("lsqml", "epie", "dm"), default="lsqml")
    rec.add_argument("--data", required=True, type=Path)
    rec.add_argument("--epochs", type=int, default=50)
    rec.add_argument("--output-dir", required=True, type=Path)
    rec.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    rec.add_argument("--seed", type=int, default=0, help="batch-order and grouping seed")
    rec.add_argument("--canonical-out", type=Path, default=None,
                     help="also write the reconstruction as a canonical NPZ/HDF5")
    _grouping_flags(rec)

    for p in (sim, tr, inf, rec):
        p.add_argument("--json", action="store_true", help="print a JSON summary")
    return parser
