"""I/O: model archive round trip and damaged archives; NPZ/HDF5 data sets with validation."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ptycho.config import LAYOUT_DEFAULTS, MODEL_LAYOUT_VERSION, SimConfig, TrainConfig, layout_defaults  # noqa: E402
from ptycho.fsutil import atomic_path  # noqa: E402
from ptycho.inference import reconstruct  # noqa: E402
from ptycho.io import (  # noqa: E402
    ARCHIVE_VERSION,
    load_data,
    load_h5,
    load_model,
    load_npz,
    save_data,
    save_model,
    save_npz,
)
from ptycho.model import build_model, model_config_for  # noqa: E402
from ptycho.physics import simulate  # noqa: E402
from ptycho.train import train  # noqa: E402

pytestmark = pytest.mark.integration  # builds models and saves their weights


@pytest.fixture(scope="module")
def sim() -> object:
    return simulate(SimConfig(N=16, gridsize=2, n_images=16, nphotons=1e6, seed=9))


@pytest.fixture(scope="module")
def archive(sim: object, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    model = build_model(model_config_for(sim, n_filters_scale=1))
    train(model, sim, TrainConfig(nepochs=1, batch_size=8))  # weights differ from init
    reconstruct(model, sim)  # builds the cached inference sub-model: must not be saved
    path = tmp_path_factory.mktemp("archive") / "model.wts.h5.zip"
    save_model(model, path, intensity_scale=sim.intensity_scale)
    return path, model


def test_model_round_trip_is_exact(sim: object, archive: tuple[Path, object]) -> None:
    path, model = archive
    loaded, cfg, meta = load_model(path)
    assert cfg == model.ptycho_config
    assert meta["format_version"] == ARCHIVE_VERSION
    assert meta["intensity_scale"] == pytest.approx(sim.intensity_scale)
    assert meta["param_count"] == model.count_params()
    x = {"diffraction": sim.diffraction, "offsets": sim.offsets}
    a, b = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    for wa, wb in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    with zipfile.ZipFile(path) as zf:
        assert set(zf.namelist()) == {"model.weights.h5", "model_config.json", "meta.json"}
        assert json.loads(zf.read("model_config.json"))["N"] == 16


def test_truncated_archive_raises_naming_the_file(archive: tuple[Path, object], tmp_path: Path) -> None:
    path, _ = archive
    raw = path.read_bytes()
    for name, blob in (("half.wts.h5.zip", raw[: len(raw) // 2]), ("tail.wts.h5.zip", raw[:-100])):
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(ValueError, match=name):
            load_model(bad)


def test_foreign_or_missing_archive_raises(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"foreign\.zip.*not a ptycho model archive"):
        load_model(foreign)
    text = tmp_path / "notes.wts.h5.zip"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match=r"notes\.wts\.h5\.zip"):
        load_model(text)
    with pytest.raises(FileNotFoundError, match="absent"):
        load_model(tmp_path / "absent.wts.h5.zip")
    future = tmp_path / "future.wts.h5.zip"
    with zipfile.ZipFile(future, "w") as zf:
        zf.writestr("model.weights.h5", b"")
        zf.writestr("model_config.json", "{}")
        zf.writestr("meta.json", json.dumps({"format": "ptycho-harness/wts.h5.zip",
                                             "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        load_model(future)


def _assert_same_data(loaded: object, sim: object) -> None:
    for key in ("diffraction", "counts", "offsets", "coords", "scan_index", "xcoords",
                "ycoords", "probe", "obj"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(sim, key), err_msg=key)
    assert loaded.intensity_scale == sim.intensity_scale
    assert loaded.nphotons == sim.nphotons
    assert loaded.config == sim.config


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_dataset_round_trip(sim: object, tmp_path: Path, suffix: str) -> None:
    path = save_data(tmp_path / f"data{suffix}", sim)
    _assert_same_data(load_data(path), sim)
    if suffix == ".npz":
        with np.load(path) as npz:
            assert {"diffraction", "xcoords", "ycoords", "probeGuess", "objectGuess",
                    "scan_index", "nphotons"} <= set(npz.files)


def test_offsets_and_coords_are_derived_when_missing(sim: object, tmp_path: Path) -> None:
    path = tmp_path / "minimal.npz"
    np.savez(path, diffraction=sim.diffraction, xcoords=sim.xcoords, ycoords=sim.ycoords,
             probeGuess=sim.probe, scan_index=sim.scan_index, nphotons=sim.nphotons)
    data = load_npz(path)
    np.testing.assert_allclose(data.offsets, sim.offsets, atol=1e-5)
    np.testing.assert_allclose(data.coords, sim.coords, atol=1e-5)
    assert data.intensity_scale == pytest.approx(sim.intensity_scale)
    assert data.counts is None and data.obj is None


def test_bad_dataset_files_raise_naming_file_and_key(sim: object, tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, diffraction=sim.diffraction, xcoords=sim.xcoords, ycoords=sim.ycoords)
    with pytest.raises(ValueError, match=r"bad\.npz.*probeGuess.*scan_index"):
        load_npz(path)
    np.savez(path, diffraction=sim.diffraction, xcoords=sim.xcoords, ycoords=sim.ycoords,
             probeGuess=sim.probe[:8], scan_index=sim.scan_index, nphotons=1.0)
    with pytest.raises(ValueError, match=r"bad\.npz.*'probeGuess'.*\(16, 16\).*\(8, 16\)"):
        load_npz(path)
    np.savez(path, diffraction=sim.diffraction, xcoords=sim.xcoords, ycoords=sim.ycoords,
             probeGuess=sim.probe, scan_index=sim.scan_index + 1000, nphotons=1.0)
    with pytest.raises(ValueError, match=r"scan_index.*\[0, 16\)"):
        load_npz(path)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.npz"):
        load_npz(tmp_path / "junk.npz")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.h5"):
        load_h5(tmp_path / "junk.h5")
    with pytest.raises(ValueError, match=r"\.csv"):
        load_data(tmp_path / "data.csv")


def test_failed_write_keeps_the_previous_file(sim: object, tmp_path: Path) -> None:
    path = save_npz(tmp_path / "keep.npz", sim)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npz"]

    class Broken:
        diffraction = sim.diffraction  # everything else missing

    with pytest.raises(AttributeError):
        save_npz(path, Broken())
    assert path.read_bytes() == before
    assert load_npz(path).n_groups == 16


def _rewrite(path: Path, target: Path, config_drop: tuple[str, ...] = (),
             meta_set: dict | None = None, meta_drop: tuple[str, ...] = ()) -> Path:
    """Copy of archive `path` with keys dropped from its config / meta (an older writer)."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name in ("model_config.json", "meta.json"):
                doc = json.loads(data)
                for key in config_drop if name == "model_config.json" else meta_drop:
                    doc.pop(key)
                if name == "meta.json":
                    doc.update(meta_set or {})
                data = json.dumps(doc).encode()
            dst.writestr(name, data)
    return target


@pytest.mark.parametrize("layout", sorted(LAYOUT_DEFAULTS))
def test_archive_of_an_older_layout_loads_as_it_was_built(sim: object, archive: tuple[Path, object],
                                                           tmp_path: Path, layout: int) -> None:
    path, _ = archive
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("meta.json"))["model_layout"] == MODEL_LAYOUT_VERSION
    # a model as that layout built it, written the way that layout wrote it: without the keys
    # later layouts added (layout 1 also without "model_layout" in meta.json)
    built = layout_defaults(layout)
    model = build_model(model_config_for(sim, n_filters_scale=1, **built))
    saved = save_model(model, tmp_path / "built.wts.h5.zip", intensity_scale=sim.intensity_scale)
    old = _rewrite(saved, tmp_path / "old.wts.h5.zip", config_drop=tuple(built),
                   meta_drop=("model_layout",) if layout == 1 else (),
                   meta_set={} if layout == 1 else {"model_layout": layout})
    loaded, cfg, _ = load_model(old)
    assert {key: getattr(cfg, key) for key in built} == built
    assert cfg.balance_counts == 0.0  # every layout before 3 trained with the plain NLL
    if layout == 1:
        assert cfg.activation == "relu" and cfg.input_transform == "linear"
        assert loaded.get_layer("amp_conv1b").activation(np.float32(-1.0)) == 0.0
    x = {"diffraction": sim.diffraction, "offsets": sim.offsets}
    np.testing.assert_array_equal(model.predict(x, verbose=0)["object"],
                                  loaded.predict(x, verbose=0)["object"])


def test_archive_of_a_newer_layout_fails_naming_the_version(archive: tuple[Path, object],
                                                            tmp_path: Path) -> None:
    path, _ = archive
    new = _rewrite(path, tmp_path / "new.wts.h5.zip", meta_set={"model_layout": MODEL_LAYOUT_VERSION + 7})
    with pytest.raises(ValueError, match=rf"new\.wts\.h5\.zip.*layout version {MODEL_LAYOUT_VERSION + 7}"):
        load_model(new)


def test_the_current_layout_writes_every_config_key(archive: tuple[Path, object]) -> None:
    path, model = archive
    with zipfile.ZipFile(path) as zf:
        written = set(json.loads(zf.read("model_config.json")))
    assert written == set(model.ptycho_config.to_dict())
    assert set(layout_defaults(1)) <= written


def test_weights_of_another_layout_fail_naming_the_layout(archive: tuple[Path, object], tmp_path: Path) -> None:
    path, _ = archive
    # a layout-1 archive whose weights came from a wider network than its config builds
    wide = _rewrite(path, tmp_path / "wide.wts.h5.zip", meta_drop=("model_layout",))
    with zipfile.ZipFile(wide) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(parts["model_config.json"])
    config["n_filters_scale"] = 2
    parts["model_config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(wide, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    with pytest.raises(ValueError, match="weights of model layout version 1 do not match"):
        load_model(wide)
