"""Canonical per-position files (PtychoPINN layout) written by independent code: loading,
grouping from the coordinates, photon scale, aliases, HDF5, and one test per bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from ptycho.canonical import (
    GroupingOptions,
    UnitsEvidence,
    count_quantum,
    detect_units,
    group,
    group_neighbors,
)
from ptycho.canonical_write import from_simulation, per_position_scan, save_canonical
from ptycho.cli import main
from ptycho.config import SimConfig
from ptycho.grouping import k_nearest
from ptycho.io import load_data
from ptycho.physics import simulate
from ptycho.scan import group_offsets

N = 16


@pytest.fixture(scope="module")
def arrays(canonical_writer: ModuleType) -> dict[str, np.ndarray]:
    return canonical_writer.make_dataset(60, n=N, size=90, nphotons=1e9, seed=4)


def _write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path, "w") as h5:
            for key, value in arrays.items():
                h5.create_dataset(key, data=value)
    else:
        np.savez(path, **arrays)
    return path


def test_canonical_file_is_grouped_from_its_scan_coordinates(arrays: dict, tmp_path: Path) -> None:
    data = load_data(_write(tmp_path / "train.npz", arrays), GroupingOptions(gridsize=2, seed=3))
    assert data.source_format == "canonical"
    assert data.diffraction.shape == (60, N, N, 4) and data.scan_index.shape == (60, 4)
    positions = np.stack([arrays["xcoords"], arrays["ycoords"]], axis=1)
    near = k_nearest(positions, 7)
    assert all(set(members) <= set(near[c]) for c, members in enumerate(data.scan_index))
    coords, offsets = group_offsets(positions, data.scan_index)
    np.testing.assert_array_equal(data.coords, coords)
    np.testing.assert_array_equal(data.offsets, offsets)
    for k in range(4):  # every channel is the pattern of its scan position
        np.testing.assert_array_equal(data.diffraction[..., k], data.per_position[data.scan_index[:, k]])
    # network units as for simulated data: mean Σ x² per pattern = (N/2)²
    power = np.sum(data.per_position.astype(np.float64) ** 2, axis=(1, 2)).mean()
    assert power == pytest.approx((N / 2) ** 2, rel=1e-5)
    # sqrt of integer counts × one constant: the photon count is recovered from the data
    assert data.nphotons_source == "count quantisation"
    assert data.nphotons == pytest.approx(1e9, rel=1e-3)
    np.testing.assert_allclose(data.counts, (data.diffraction * data.intensity_scale) ** 2, rtol=1e-5)
    small = data.counts[data.counts < 1000]
    assert small.size > 100 and np.abs(small - np.rint(small)).max() < 0.05
    np.testing.assert_array_equal(data.obj, arrays["objectGuess"])
    again = load_data(tmp_path / "train.npz", GroupingOptions(gridsize=2, seed=3))
    np.testing.assert_array_equal(again.scan_index, data.scan_index)


def test_hdf5_and_the_diff3d_alias_load_like_the_npz(arrays: dict, tmp_path: Path) -> None:
    reference = load_data(_write(tmp_path / "a.npz", arrays))
    renamed = {("diff3d" if k == "diffraction" else k): v for k, v in arrays.items()}
    for path in (_write(tmp_path / "b.h5", arrays), _write(tmp_path / "c.npz", renamed),
                 _write(tmp_path / "d.h5", renamed),
                 _write(tmp_path / "e.npz", {**arrays, "diff3d": arrays["diffraction"]})):
        data = load_data(path)
        for key in ("diffraction", "counts", "coords", "offsets", "scan_index", "probe", "obj"):
            np.testing.assert_array_equal(getattr(data, key), getattr(reference, key), err_msg=str(path))


def test_gridsize_groups_and_neighbors_options(arrays: dict, tmp_path: Path) -> None:
    path = _write(tmp_path / "a.npz", arrays)
    data = load_data(path, GroupingOptions(gridsize=3, n_groups=25, neighbors=12, seed=1))
    assert data.diffraction.shape == (25, N, N, 9)
    data = load_data(path, GroupingOptions(gridsize=1))
    np.testing.assert_array_equal(data.scan_index[:, 0], np.arange(60))
    np.testing.assert_array_equal(data.offsets, 0)


def test_intensity_files_are_detected_and_the_flags_have_the_last_word(
        canonical_writer: ModuleType, tmp_path: Path) -> None:
    amp = canonical_writer.make_dataset(40, n=N, size=80, seed=2)
    inten = canonical_writer.make_dataset(40, n=N, size=80, seed=2, intensity=True)
    a = load_data(_write(tmp_path / "amp.npz", amp))
    assert a.units.startswith("amplitude (the squared values")
    for options in (GroupingOptions(intensity=True), GroupingOptions()):  # flag, or detected
        i = load_data(_write(tmp_path / "int.npz", inten), options)
        np.testing.assert_allclose(i.per_position, a.per_position, rtol=1e-5, atol=1e-6)
        assert i.nphotons == pytest.approx(a.nphotons, rel=1e-6)
    assert load_data(tmp_path / "int.npz").units.startswith("intensity (the values are integer")
    # --amplitude: the user's word wins over the evidence (no sqrt taken) …
    forced = load_data(tmp_path / "int.npz", GroupingOptions(intensity=False))
    assert forced.units == "amplitude (given (--amplitude))"
    ratio = forced.per_position / np.where(a.per_position > 0, a.per_position ** 2, np.nan)
    assert np.nanstd(ratio) < 1e-4 * np.nanmean(ratio)  # x held as is: the square of a's
    # … and so does --intensity on amplitudes (sqrt taken of amplitudes)
    sqrt = load_data(tmp_path / "amp.npz", GroupingOptions(intensity=True))
    ratio = sqrt.per_position / np.where(a.per_position > 0, np.sqrt(a.per_position), np.nan)
    assert np.nanstd(ratio) < 1e-4 * np.nanmean(ratio)


def test_integer_counts_are_intensities(canonical_writer: ModuleType, tmp_path: Path) -> None:
    inten = canonical_writer.make_dataset(40, n=N, size=80, seed=2, intensity=True)
    counts = np.rint(inten["diffraction"] / count_quantum(inten["diffraction"]))
    path = _write(tmp_path / "counts.npz", {**inten, "diffraction": counts.astype(np.int32)})
    data = load_data(path)
    assert data.units.startswith("intensity (integer dtype int32")
    reference = load_data(_write(tmp_path / "amp.npz", canonical_writer.make_dataset(40, n=N, size=80, seed=2)))
    np.testing.assert_allclose(data.per_position, reference.per_position, rtol=1e-4, atol=1e-5)


def test_bright_centre_amplitudes_are_accepted_without_a_flag(ptychopinn_writer: ModuleType,
                                                              tmp_path: Path) -> None:
    """PtychoPINN's own simulator output: sqrt of Poisson counts / scale, a bright central beam
    (peak / mean > 100). Refused as 'intensities' by the old dynamic-range rule."""
    arrays = ptychopinn_writer.make_dataset(64, n=64, size=128, seed=3)  # its N, object, scan
    amp = arrays["diffraction"]
    assert amp.max() / amp.mean() > 100
    data = load_data(_write(tmp_path / "pp.npz", arrays))
    assert data.units.startswith("amplitude (the squared values are integer multiples")
    assert data.nphotons == pytest.approx(1e9, rel=1e-3)
    power = np.sum(data.per_position.astype(np.float64) ** 2, axis=(1, 2)).mean()
    assert power == pytest.approx(32 ** 2, rel=1e-5)
    ratio = data.per_position / np.where(amp > 0, amp, np.nan)  # the amplitudes, not their sqrt
    assert np.nanstd(ratio) < 1e-5 * np.nanmean(ratio)


def test_unquantised_patterns_are_assumed_amplitudes_with_a_warning(
        ptychopinn_writer: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    arrays = ptychopinn_writer.make_dataset(64, n=N, size=48, buffer=5.0, seed=3, noise=False)
    with caplog.at_level(logging.WARNING, logger="ptycho.canonical"):
        data = load_data(_write(tmp_path / "clean.npz", arrays))
    assert data.units.startswith("amplitude (no count quantisation")
    assert "assuming amplitudes (pass --intensity or --amplitude" in caplog.text


def test_detect_units_evidence() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.uniform(0, 30, (4, 16, 16))).astype(np.float64)
    assert detect_units(np.dtype(np.int32), counts).units == "intensity"
    assert detect_units(np.dtype(np.float32), 0.25 * counts) == UnitsEvidence(
        "intensity", "the values are integer multiples of one constant (photon counts)", True)
    assert detect_units(np.dtype(np.float32), 3 * np.sqrt(counts)).units == "amplitude"
    assert detect_units(np.dtype(np.float32), 3 * np.sqrt(counts)).certain
    binary = np.minimum(counts, 1)  # 0 or q: both readings agree
    assert detect_units(np.dtype(np.float32), binary).units == "amplitude"
    smooth = rng.uniform(0.1, 2.0, (4, 16, 16))
    assert not detect_units(np.dtype(np.float32), smooth).certain


def test_photon_count_given_from_metadata_or_default(arrays: dict, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path / "a.npz", arrays)
    given = load_data(path, GroupingOptions(nphotons=1e5))
    assert (given.nphotons, given.nphotons_source) == (1e5, "given")
    assert given.intensity_scale == pytest.approx(np.sqrt(1e5) / (N / 2))
    assert given.counts.sum(axis=(1, 2)).mean() == pytest.approx(1e5, rel=0.05)
    meta = _write(tmp_path / "m.npz", {**arrays, "_metadata": np.asarray(json.dumps({"nphotons": 1e6}))})
    assert (load_data(meta).nphotons, load_data(meta).nphotons_source) == (1e6, "metadata")
    # processed (not sqrt-of-counts) amplitudes: no quantisation, so the default, with a warning
    rough = arrays["diffraction"] * (1 + 1e-3 * np.random.default_rng(0).random(arrays["diffraction"].shape))
    assert count_quantum(rough.astype(np.float64) ** 2) is None
    with caplog.at_level(logging.WARNING, logger="ptycho.canonical"):
        data = load_data(_write(tmp_path / "r.npz", {**arrays, "diffraction": rough.astype(np.float32)}))
    assert (data.nphotons, data.nphotons_source) == (1e9, "default")
    assert "--nphotons" in caplog.text


def test_simulation_written_canonically_reads_back(tmp_path: Path) -> None:
    sim = simulate(SimConfig(N=N, gridsize=2, n_images=30, nphotons=1e6, seed=5))
    arrays = from_simulation(sim)
    assert arrays["diffraction"].shape == (30, N, N)
    path = save_canonical(tmp_path / "sim.npz", arrays)
    data = load_data(path, GroupingOptions(gridsize=2, seed=0))
    assert (data.nphotons, data.nphotons_source) == (1e6, "metadata")
    np.testing.assert_array_equal(data.obj, sim.obj)
    np.testing.assert_array_equal(data.xcoords, sim.xcoords)
    # the patterns of the simulation's groups, up to the file's one normalisation constant
    first = sim.diffraction[:, :, :, 0]
    ratio = data.per_position[sim.scan_index[:, 0]] / np.where(first > 0, first, np.nan)
    assert np.nanstd(ratio) < 1e-5 * np.nanmean(ratio)
    h5 = save_canonical(tmp_path / "sim.h5", arrays)
    np.testing.assert_array_equal(load_data(h5).diffraction, load_data(path).diffraction)


# --------------------------------------------------------------------------- bad input
def _bad(arrays: dict[str, np.ndarray], case: str) -> dict[str, np.ndarray]:
    bad = {k: np.array(v) for k, v in arrays.items()}
    if case == "rank":
        bad["diffraction"] = bad["diffraction"][0]
    elif case == "lengths":
        bad["xcoords"] = bad["xcoords"][:-1]
    elif case == "nan":
        bad["diffraction"][3, 2, 2] = np.nan
    elif case == "inf_coords":
        bad["ycoords"][0] = np.inf
    elif case == "negative":
        bad["diffraction"][0, 0, 0] = -0.1
    elif case == "probe_shape":
        bad["probeGuess"] = bad["probeGuess"][:8]
    elif case == "few_positions":
        bad = {k: (v[:3] if k in ("diffraction", "xcoords", "ycoords", "scan_index") else v)
               for k, v in bad.items()}
    elif case == "diff3d_differs":
        bad["diff3d"] = bad["diffraction"] * 2
    return bad


BAD_CASES = {
    "rank": ("diffraction", r"rank 2"),
    "lengths": ("xcoords", r"has 59 positions but 'diffraction' has 60"),
    "nan": ("diffraction", r"1 NaN or Inf"),
    "inf_coords": ("ycoords", r"NaN or Inf"),
    "negative": ("diffraction", r"negative values"),
    "probe_shape": ("probeGuess", rf"pattern shape \({N}, {N}\), got \(8, {N}\)"),
    "few_positions": ("diffraction", r"3 scan positions, fewer than gridsize² = 4"),
    "diff3d_differs": ("diff3d", r"differs from 'diffraction'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_canonical_input_exits_1_naming_key_and_file(
        case: str, arrays: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, detail = BAD_CASES[case]
    path = _write(tmp_path / f"bad_{case}.npz", _bad(arrays, case))
    with pytest.raises(ValueError, match=rf"bad_{case}\.npz: '{key}' .*{detail}"):
        load_data(path)
    out = tmp_path / "out"
    rc = main(["train", "--data", str(path), "--output-dir", str(out), "--nepochs", "1"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"bad_{case}.npz" in err and f"'{key}'" in err, err
    assert not out.exists()  # nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_legacy_layouts_load_like_the_canonical_one(arrays: dict, tmp_path: Path) -> None:
    reference = load_data(_write(tmp_path / "a.npz", arrays))
    for name, patterns in (("channel", arrays["diffraction"][..., None]),
                           ("hwn", np.moveaxis(arrays["diffraction"], 0, 2))):
        data = load_data(_write(tmp_path / f"{name}.npz", {**arrays, "diffraction": patterns}))
        np.testing.assert_array_equal(data.diffraction, reference.diffraction, err_msg=name)


def test_a_dense_scan_draws_groups_from_the_probe_disk_not_from_one_spot(
        caplog: pytest.LogCaptureFixture) -> None:
    """PtychoPINN's scans put 2000 positions about 1 px apart: the 7 nearest are one spot."""
    from ptycho.probe import illumination_radius, make_probe

    rng = np.random.default_rng(0)
    probe = make_probe(32, 3.0)  # illumination radius ≈ 5.3 px
    dense = rng.uniform(0, 40, (1600, 2))  # one position per px²
    sparse = rng.uniform(0, 400, (200, 2))
    options = GroupingOptions(gridsize=2)
    with caplog.at_level(logging.INFO, logger="ptycho.canonical"):
        k_dense = group_neighbors(dense, probe, options)
    assert k_dense > 50 and "illumination radius" in caplog.text
    assert group_neighbors(sparse, probe, options) == 7  # the old default where it is larger
    assert group_neighbors(dense, probe, GroupingOptions(gridsize=2, neighbors=9)) == 9
    patterns = np.zeros((len(dense), 32, 32), np.float32)
    index, grouped = group(dense, patterns, probe, options)
    assert grouped.shape == (len(dense), 32, 32, 4)
    spread = np.hypot(*(dense[index] - dense[index].mean(axis=1, keepdims=True)).T)
    assert np.median(spread) > 0.4 * illumination_radius(probe)  # 1-px groups before


def test_per_position_scan_gives_each_used_position_its_pattern_once() -> None:
    sim = simulate(SimConfig(N=16, gridsize=2, n_images=30, nphotons=1e6, seed=2))
    patterns, positions = per_position_scan(sim)
    used = np.unique(sim.scan_index)
    assert patterns.shape == (len(used), 16, 16) and positions.shape == (len(used), 2)
    np.testing.assert_array_equal(positions, np.stack([sim.xcoords[used], sim.ycoords[used]], 1))
    b, c = 3, 1  # any group member: its pattern is its position's
    k = int(np.searchsorted(used, sim.scan_index[b, c]))
    np.testing.assert_array_equal(patterns[k], sim.diffraction[b, :, :, c])
