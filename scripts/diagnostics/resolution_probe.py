"""Resolution probe: train on one bench object, score a held-out scan after every epoch.

Simulates ``--n-images`` training groups of ``--object`` (seed ``--seed``) and ``--n-test``
held-out groups of another sample of the same object family (seed + 1000), trains the model
with the given ModelConfig / TrainConfig overrides and after every epoch writes amplitude and
phase SSIM / FRC50 of the stitched held-out object (scanned region), and as ``fit_*`` the
same for the training scan itself (its own sample), to the JSON ``--out``
(rewritten atomically after every epoch). Used for docs/findings.md RESOLUTION-LOSS-001.

``--supervised`` trains the same network (diffraction → object patches, no physics layers) on
the true object patches instead of the diffraction data: the |probe|²-weighted squared error of
the complex patches. It separates what the network can learn in the time from what the physics
loss lets it learn.

Usage: ``python scripts/diagnostics/resolution_probe.py --object pinn_lines --out p.json
[--nepochs 8] [--model n_filters_scale=4] [--train clipnorm=none] [--supervised]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _pairs(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key] = _value(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--object", default="pinn_lines")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--N", type=int, default=64)
    parser.add_argument("--nphotons", type=float, default=1e9)
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=512)
    parser.add_argument("--nepochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--integer-positions", action="store_true",
                        help="scan positions and group offsets on whole pixels: no sub-pixel "
                             "(bilinear) interpolation in simulation, overlap constraint or stitching")
    parser.add_argument("--supervised", action="store_true",
                        help="train on the true object patches (no physics loss): a diagnostic")
    parser.add_argument("--random-out", action="store_true",
                        help="start the decoders' output convolutions from Glorot-uniform weights "
                             "instead of zeros (the default flat start)")
    parser.add_argument("--sim", nargs="*", default=[], help="SimConfig overrides KEY=VALUE")
    parser.add_argument("--model", nargs="*", default=[], help="ModelConfig overrides KEY=VALUE")
    parser.add_argument("--train", nargs="*", default=[], help="TrainConfig overrides KEY=VALUE")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np

    from ptycho.config import ModelConfig, SimConfig, TrainConfig
    from ptycho.fsutil import atomic_write_text
    from ptycho.inference import reconstruct
    from ptycho.metrics import evaluate, scanned_region
    from ptycho.model import build_model
    from ptycho.physics import simulate
    from ptycho.train import train

    if args.integer_positions:  # diagnostic only: every scan position on a whole pixel
        import ptycho.physics as physics

        draw = physics.random_positions
        physics.random_positions = lambda *a: np.floor(draw(*a) + 0.5)

    def sim(seed: int, count: int) -> Any:
        sim_kw = {"N": args.N, "gridsize": 2, "nphotons": args.nphotons, "n_images": count,
                  "probe_defocus": 2.0, "object_type": args.object, "seed": seed,
                  **_pairs(args.sim)}  # --sim overrides any of these
        data = simulate(SimConfig(**sim_kw))
        if args.integer_positions:  # whole-pixel offsets from the group centre, too
            data = dataclasses.replace(data, offsets=np.floor(data.offsets + 0.5))
        return data

    data, test = sim(args.seed, args.n_images), sim(args.seed + 1000, args.n_test)
    crop = scanned_region(test.coords, test.obj.shape)
    train_crop = scanned_region(data.coords, data.obj.shape)
    model_kw = {"N": args.N, "gridsize": 2, "probe_defocus": 2.0,
                "intensity_scale": data.intensity_scale, **_pairs(args.model)}
    # the probes' fixed set-up (RESOLUTION-LOSS-001 sections 3 and 5: lr 1e-3, constant), not
    # TrainConfig's defaults; --train overrides it
    train_kw = {"nepochs": args.nepochs, "batch_size": 16, "learning_rate": 1e-3,
                "lr_schedule": "constant", "seed": args.seed, **_pairs(args.train)}
    model = build_model(ModelConfig(**model_kw), probe=data.probe, seed=args.seed)
    if args.random_out:
        for name in ("amp_out", "phase_out"):
            layer = model.get_layer(name)
            kernel, bias = layer.get_weights()
            init = keras.initializers.GlorotUniform(seed=args.seed + len(name))
            layer.set_weights([np.asarray(init(kernel.shape)), bias])
    record: dict[str, Any] = {"object": args.object, "nphotons": args.nphotons,
                              "sim": _pairs(args.sim), "integer_positions": args.integer_positions,
                              "n_images": args.n_images, "n_test": args.n_test, "N": args.N,
                              "supervised": args.supervised, "random_out": args.random_out,
                              "model": {k: v for k, v in model_kw.items() if k != "intensity_scale"},
                              "train": train_kw, "params": int(model.count_params()),
                              "path": model.execution.name, "epochs": []}

    class Score(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.trained, self.t0 = 0.0, 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.trained += time.perf_counter() - self.t0
            m = evaluate(reconstruct(model, test), test.obj, crop)
            fit = evaluate(reconstruct(model, data), data.obj, train_crop)
            row = {"epoch": epoch + 1, "train_s": round(self.trained, 1),
                   "loss": float((logs or {}).get("loss", np.nan)),
                   "load": round(os.getloadavg()[0], 2),
                   **{k: _round(v) for k, v in m.items()},
                   **{f"fit_{k}": _round(v) for k, v in fit.items() if k.endswith(("ssim", "frc50"))}}
            record["epochs"].append(row)
            atomic_write_text(args.out, json.dumps(record, indent=1))
            print(json.dumps(row), file=sys.stderr, flush=True)

    if args.supervised:
        _train_supervised(model, data, TrainConfig(**train_kw), Score())
    else:
        train(model, data, TrainConfig(**train_kw), callbacks=[Score()])
    return 0


def _train_supervised(model: Any, data: Any, cfg: Any, callback: Any) -> None:
    """Fit the model's diffraction → object sub-network to the true patches (B,N,N,C) c64 with
    the |probe|²-weighted squared complex error (Adam, the TrainConfig's lr / clipnorm / batch),
    in a plain GradientTape loop; `callback` gets on_epoch_begin / on_epoch_end."""
    import keras
    import numpy as np
    import tensorflow as tf

    from ptycho.model import inference_model, model_probe

    probe = model_probe(model)
    weights = np.abs(probe) ** 2
    weights = tf.constant((weights / weights.sum())[None, :, :, None].astype(np.float32))
    # the network's object is in the data normalisation's units: the true patches times k, with
    # k² = Σ measured amplitude² / Σ |FFT(model probe · true patch)|² (ortho FFT, as FarField)
    patches = np.asarray(data.object_patches[:256], np.complex64)
    far = np.fft.fft2(probe[None, :, :, None] * patches, axes=(1, 2), norm="ortho")
    k = float(np.sqrt(np.sum(np.square(data.diffraction[:256], dtype=np.float64))
                      / np.sum(np.abs(far) ** 2)))
    inputs = np.asarray(data.diffraction, np.float32)
    truth = np.asarray(data.object_patches, np.complex64) * np.complex64(k)
    sub = inference_model(model)
    optimizer = keras.optimizers.Adam(cfg.learning_rate, global_clipnorm=cfg.clipnorm)

    @tf.function
    def step(x: Any, target: Any) -> Any:
        with tf.GradientTape() as tape:
            error = tf.abs(tf.cast(sub(x, training=True), tf.complex64) - target) ** 2
            loss = tf.reduce_mean(tf.reduce_sum(weights * error, axis=[1, 2, 3]))
        optimizer.apply_gradients(zip(tape.gradient(loss, sub.trainable_variables),
                                      sub.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(cfg.seed)
    for epoch in range(cfg.nepochs):
        callback.on_epoch_begin(epoch)
        order = rng.permutation(len(inputs)) if cfg.shuffle else np.arange(len(inputs))
        losses = [float(step(inputs[idx], truth[idx]))
                  for idx in np.array_split(order, max(1, len(order) // cfg.batch_size))]
        callback.on_epoch_end(epoch, {"loss": float(np.mean(losses))})


if __name__ == "__main__":
    raise SystemExit(main())
