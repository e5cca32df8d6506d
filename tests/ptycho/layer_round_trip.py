"""One serialisation check for every custom Keras layer (as keras-hub's ``run_layer_test``).

``assert_layer_round_trips(layer, *call_args)`` checks that the layer

* is registered with Keras under ``ptycho>ClassName``;
* lists every constructor argument in ``get_config`` (a forgotten one fails here, by name);
* has a JSON-serialisable config that ``from_config`` reproduces exactly;
* gives a clone built from that config with the same weights and the same outputs on the same
  input (``call_args``), and likewise after ``serialize_keras_object`` → JSON →
  ``deserialize_keras_object``.

ptycho's layers initialise every weight from their configuration (constants: the probe, the
overlap weights, the intensity scale), so a clone built from the config alone must equal the
original: no weights are copied before comparing.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import keras
import numpy as np


def _constructor_arguments(cls: type) -> list[str]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in parameters
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _outputs(layer: keras.layers.Layer, call_args: tuple[Any, ...]) -> list[np.ndarray]:
    out = layer(*call_args)
    return [np.asarray(t) for t in (out if isinstance(out, (list, tuple)) else [out])]


def _assert_same(original: keras.layers.Layer, clone: keras.layers.Layer,
                 call_args: tuple[Any, ...], expected: list[np.ndarray], how: str) -> None:
    name = type(original).__name__
    got = _outputs(clone, call_args)  # builds the clone
    before = [np.asarray(w) for w in original.get_weights()]
    after = [np.asarray(w) for w in clone.get_weights()]
    assert [w.shape for w in after] == [w.shape for w in before], (
        f"{name} {how}: weights {[w.shape for w in after]} != {[w.shape for w in before]}")
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} {how}: weight values differ")
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{name} {how}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=f"{name} {how}: outputs differ")


def assert_layer_round_trips(layer: keras.layers.Layer, *call_args: Any) -> None:
    """Fail with a message naming the layer unless it survives the checks listed above."""
    cls = type(layer)
    name = cls.__name__
    registered = keras.saving.get_registered_object(f"ptycho>{name}")
    assert registered is cls, f"{name} is not registered (keras.saving.register_keras_serializable)"

    config = layer.get_config()
    missing = [arg for arg in _constructor_arguments(cls) if arg not in config]
    assert missing == [], f"{name}.get_config lacks constructor argument(s) {missing}"
    text = json.dumps(config, sort_keys=True)  # fails on values JSON cannot hold

    expected = _outputs(layer, call_args)
    clone = cls.from_config(json.loads(text))
    assert json.dumps(clone.get_config(), sort_keys=True) == text, f"{name}: from_config changed the config"
    _assert_same(layer, clone, call_args, expected, "from_config(get_config())")

    serialized = json.dumps(keras.saving.serialize_keras_object(layer))
    restored = keras.saving.deserialize_keras_object(json.loads(serialized))
    assert type(restored) is cls, f"{name}: deserialised as {type(restored).__name__}"
    assert json.dumps(restored.get_config(), sort_keys=True) == text, f"{name}: config changed in serialisation"
    _assert_same(layer, restored, call_args, expected, "serialize/deserialize_keras_object")
