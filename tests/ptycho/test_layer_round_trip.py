"""Every custom Keras layer of ptycho survives a serialisation round trip (one shared check)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
from layer_round_trip import assert_layer_round_trips

import ptycho
from ptycho import layers, overlap
from ptycho.translation import Translation

B, N, C = 2, 8, 4


def _real(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _complex(*shape: int, seed: int = 0) -> np.ndarray:
    return (_real(*shape, seed=seed) + 1j * _real(*shape, seed=seed + 1)).astype(np.complex64)


def _offsets() -> np.ndarray:
    return np.random.default_rng(5).uniform(-2.5, 2.5, (B, 1, 2, C)).astype(np.float32)


def _probe() -> np.ndarray:
    return layers.normalised_probe(_complex(N, N, seed=9))


#: layer → (a configured instance, the arguments it is called with). Constructor arguments
#: differ from their defaults wherever they can, so a forgotten one changes the clone.
CASES: dict[type, Callable[[], tuple[keras.layers.Layer, tuple[Any, ...]]]] = {
    layers.GroupsToBatch: lambda: (layers.GroupsToBatch(name="g2b"), (_real(B, N, N, C),)),
    layers.BatchToGroups: lambda: (layers.BatchToGroups(C, name="b2g"), (_real(B * C, N, N, 1),)),
    layers.AmplitudeActivation: lambda: (layers.AmplitudeActivation(max_amplitude=2.5), (_real(B, N, N, C),)),
    layers.PhaseActivation: lambda: (layers.PhaseActivation(), (_real(B, N, N, C),)),
    layers.CombineComplex: lambda: (layers.CombineComplex(),
                                    (np.abs(_real(B, N, N, C)), _real(B, N, N, C, seed=2))),
    overlap.OverlapConstraint: lambda: (
        overlap.OverlapConstraint(pad=3, use_xla=False, compile_xla=False, subpixel="fourier", align_phases=True,
                                 weights=np.abs(_probe()) ** 2 / np.max(np.abs(_probe()) ** 2)),
        (_complex(B, N, N, C), _offsets())),
    layers.ProbeIllumination: lambda: (layers.ProbeIllumination(N, _probe()), (_complex(B, N, N, C),)),
    layers.FarField: lambda: (layers.FarField(), (_complex(B, N, N, C),)),
    layers.LogCompress: lambda: (layers.LogCompress(floor=0.05), (np.abs(_real(B, N, N, C)),)),
    layers.InputStandardise: lambda: (layers.InputStandardise(floor=0.2, keep_input=True), (_real(B, N, N, C),)),
    layers.IntensityScale: lambda: (layers.IntensityScale(initial_scale=37.5, trainable_scale=False),
                                    (np.abs(_real(B, N, N, C)),)),
    Translation: lambda: (Translation(use_xla=False),
                          ([_complex(B * C, N, N, 1), _real(B * C, 2, seed=4)],)),
}


def _ptycho_layer_classes() -> set[type]:
    found = set()
    for info in pkgutil.iter_modules(ptycho.__path__):
        if info.name in ("__main__", "cli"):
            continue
        module = importlib.import_module(f"ptycho.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, keras.layers.Layer) and not issubclass(cls, keras.Model)
                    and cls.__module__.startswith("ptycho.")):
                found.add(cls)
    return found


def test_every_ptycho_layer_has_a_round_trip_case() -> None:
    assert {c.__name__ for c in _ptycho_layer_classes()} - {c.__name__ for c in CASES} == set()


@pytest.mark.parametrize("cls", list(CASES), ids=lambda cls: cls.__name__)
def test_layer_round_trips(cls: type) -> None:
    layer, call_args = CASES[cls]()
    assert_layer_round_trips(layer, *call_args)


def test_the_check_catches_a_config_that_forgets_an_argument() -> None:
    class Forgetful(keras.layers.Layer):
        def __init__(self, factor: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x: Any) -> Any:
            return x * self.factor

        def get_config(self) -> dict[str, Any]:
            return super().get_config()

    keras.saving.register_keras_serializable(package="ptycho", name="Forgetful")(Forgetful)
    with pytest.raises(AssertionError, match=r"Forgetful.get_config lacks .*\['factor'\]"):
        assert_layer_round_trips(Forgetful(factor=3.0), _real(B, N))


def test_a_probe_config_with_other_keys_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"needs keys 'real' and 'imag', got \['re'\]"):
        layers.ProbeIllumination(N, {"re": np.zeros((N, N)).tolist()})
