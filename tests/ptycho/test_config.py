"""Config dataclasses: validation errors name the value, dict/JSON/YAML round trips."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ptycho.config import ConfigError, ModelConfig, SimConfig, TrainConfig


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"N": 60}, r"N must be a multiple of 8 and >= 16.*got 60"),
        ({"N": 8}, r"N must be a multiple of 8 and >= 16.*got 8"),
        ({"N": 64.0}, r"N must be an int, got 64.0"),
        ({"N": True}, r"N must be an int"),
        ({"gridsize": 0}, r"gridsize must be >= 1, got 0"),
        ({"nphotons": 0}, r"nphotons must be > 0, got 0"),
        ({"nphotons": -1e4}, r"nphotons must be > 0"),
        ({"nphotons": float("inf")}, r"nphotons must be finite"),
        ({"nphotons": "1e9"}, r"nphotons must be a number"),
        ({"n_images": 0}, r"n_images must be >= 1, got 0"),
        ({"gridsize": 3, "neighbor_count": 7}, r"neighbor_count must be >= gridsize² = 9.*got 7"),
        ({"object_type": "zebra"}, r"object_type must be one of \['lines', 'random', 'disk', .*\], got 'zebra'"),
        ({"probe_scale": 0.0}, r"probe_scale must be > 0"),
        ({"probe_defocus": float("inf")}, r"probe_defocus must be finite"),
        ({"scan_buffer": 10}, r"scan_buffer must be >= 33, got 10"),
        ({"object_size": 50}, r"object_size must be >= 2·scan_buffer \+ 1 = 73.*got 50"),
    ],
)
def test_sim_config_rejects_bad_values(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        SimConfig(**kwargs)


def test_config_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        SimConfig(gridsize=-1)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"N": 100}, r"N must be a multiple of 8"),
        ({"gridsize": 0}, r"gridsize must be >= 1"),
        ({"n_filters_scale": 0}, r"n_filters_scale must be >= 1"),
        ({"loss": "mse"}, r"loss must be one of \['nll', 'mae'\], got 'mse'"),
        ({"intensity_scale": -2.0}, r"intensity_scale must be > 0"),
        ({"jit_compile": "yes"}, r"jit_compile must be a bool or None"),
        ({"translation_xla": None}, r"translation_xla must be a bool"),
        ({"balance_counts": -1}, r"balance_counts must be >= 0 \(0 turns the ring balance off\), got -1.0"),
        ({"balance_counts": "lots"}, r"balance_counts must be a number, got 'lots'"),
    ],
)
def test_model_config_rejects_bad_values(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"nepochs": 0}, r"nepochs must be >= 1, got 0"),
        ({"batch_size": 0}, r"batch_size must be >= 1"),
        ({"learning_rate": 0}, r"learning_rate must be > 0"),
        ({"shuffle": 1}, r"shuffle must be a bool"),
    ],
)
def test_train_config_rejects_bad_values(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("cls", [SimConfig, ModelConfig, TrainConfig])
def test_from_dict_rejects_unknown_keys_naming_them(cls: type) -> None:
    data = cls().to_dict() | {"colour": "red", "Nn": 3}
    with pytest.raises(ConfigError, match=r"unknown \w+ key\(s\): Nn, colour; valid keys: "):
        cls.from_dict(data)


@pytest.mark.parametrize(
    "cfg",
    [
        SimConfig(),
        SimConfig(N=32, gridsize=1, nphotons=1e4, n_images=10, object_size=200,
                  object_type="disk", neighbor_count=1, scan_buffer=40, seed=7),
        ModelConfig(),
        ModelConfig(N=128, loss="mae", jit_compile=True, mixed_precision=False, translation_xla=False),
        TrainConfig(),
        TrainConfig(nepochs=3, batch_size=4, learning_rate=5e-4, seed=3, shuffle=False),
    ],
)
def test_round_trip_dict_json_yaml(cfg) -> None:
    cls = type(cfg)
    assert cls.from_dict(cfg.to_dict()) == cfg
    assert cls.from_json(cfg.to_json()) == cfg
    assert cls.from_yaml(cfg.to_yaml()) == cfg
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_yaml_scientific_notation_without_dot_is_accepted() -> None:
    # PyYAML reads "1e4" as a string; from_dict coerces numeric strings for float fields.
    cfg = SimConfig.from_yaml("nphotons: 1e4\nN: 32\ngridsize: 1\nneighbor_count: 1\n")
    assert cfg.nphotons == 1e4 and isinstance(cfg.nphotons, float)
    with pytest.raises(ConfigError, match="nphotons must be a number, got 'lots'"):
        SimConfig.from_yaml("nphotons: lots\n")


def test_ints_are_stored_as_floats_and_configs_are_frozen() -> None:
    cfg = SimConfig(nphotons=10000)
    assert isinstance(cfg.nphotons, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.N = 32  # type: ignore[misc]
    with pytest.raises(ConfigError, match="gridsize must be >= 1"):
        cfg.replace(gridsize=0)


def test_derived_sizes() -> None:
    cfg = SimConfig(N=64, n_images=2000)
    assert cfg.C == 4 and cfg.buffer == 36
    # one scan position per (N/8)^2 px on average, plus the buffer on each side
    assert cfg.canvas_size % 8 == 0
    assert cfg.canvas_size >= (2000**0.5) * 8 + 72
    assert SimConfig(object_size=300).canvas_size == 300
    assert ModelConfig(gridsize=3).C == 9


def test_bad_text_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid SimConfig JSON"):
        SimConfig.from_json("{N: 64")
    with pytest.raises(ConfigError, match="expects a dict"):
        SimConfig.from_yaml("- 1\n- 2\n")
