"""Importing ptycho (every module) builds no model and creates no tf.Variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # fresh Python processes importing TensorFlow and all of ptycho

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import gc, importlib, json, pkgutil, sys
import tensorflow as tf
created = []

def creator(next_creator, **kwargs):
    created.append(kwargs.get("name"))
    return next_creator(**kwargs)

with tf.variable_creator_scope(creator):
    import ptycho
    names = sorted(m.name for m in pkgutil.iter_modules(ptycho.__path__) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"ptycho.{name}")
import keras
layers = [type(o).__name__ for o in gc.get_objects() if isinstance(o, keras.layers.Layer)]
variables = [type(o).__name__ for o in gc.get_objects() if isinstance(o, (tf.Variable, keras.Variable))]
policy = keras.mixed_precision.global_policy().name
print(json.dumps({"modules": names, "created": created, "layers": layers,
                  "variables": variables, "policy": policy}))
"""


def test_importing_every_ptycho_module_builds_nothing() -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"model", "layers", "losses", "train", "inference", "io", "cli"} <= set(report["modules"])
    assert report["created"] == []
    assert report["layers"] == []
    assert report["variables"] == []
    assert report["policy"] == "float32"


def test_the_probe_detects_a_model_built_at_import(tmp_path: Path) -> None:
    """The subprocess check above is able to fail: a module that builds a layer is caught."""
    package = tmp_path / "ptycho_fake"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text("import keras\nLAYER = keras.layers.Dense(2)\nLAYER.build((None, 3))\n")
    probe = PROBE.replace("import ptycho\n", "import ptycho_fake as ptycho\n").replace(
        'f"ptycho.{name}"', 'f"ptycho_fake.{name}"')
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["layers"] == ["Dense"]
    assert len(report["created"]) == 2
