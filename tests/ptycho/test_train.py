"""Training: loss decreases, CSV history and progress lines, bad input, MirroredStrategy,
and (slow) a real reconstruction at 1e9 photons."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from ptycho.config import ConfigError, SimConfig, TrainConfig  # noqa: E402
from ptycho.model import build_model, model_config_for  # noqa: E402
from ptycho.physics import simulate  # noqa: E402
from ptycho.train import PREFETCH_BATCHES, CosineLearningRate, make_dataset, train  # noqa: E402

pytestmark = pytest.mark.integration  # trains models

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data16() -> object:
    return simulate(SimConfig(N=16, gridsize=2, n_images=64, nphotons=1e6, seed=2))


def test_loss_decreases_and_history_is_logged(data16: object, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    model = build_model(model_config_for(data16, n_filters_scale=1))
    history_csv = tmp_path / "out" / "history.csv"
    with caplog.at_level(logging.INFO, logger="ptycho.train"):
        history = train(model, data16, TrainConfig(nepochs=4, batch_size=16, learning_rate=3e-3,
                                                   lr_schedule="constant"),
                        history_csv=history_csv)
    losses = history.history["loss"]
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(3e-3)
    assert "lr" not in history.history  # no schedule, no lr column
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert min(losses[1:]) < losses[0]  # 16 steps on 64 groups: the curve is noisy
    rows = list(csv.DictReader(history_csv.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["loss"]) for r in rows] == pytest.approx(losses, rel=1e-6)
    assert all(float(r["epoch_time_s"]) > 0 for r in rows)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(progress) == 4 and progress[-1].startswith("epoch 4/4 loss=")
    assert "groups/s=" in progress[0]


def test_gradient_clipping_follows_the_train_config(data16: object) -> None:
    def largest_update(clipnorm: float | None) -> float:
        model = build_model(model_config_for(data16, n_filters_scale=1), seed=3)
        before = [w.numpy().copy() for w in model.trainable_weights]
        train(model, data16, TrainConfig(nepochs=1, batch_size=16, clipnorm=clipnorm))
        assert model.optimizer.global_clipnorm == clipnorm
        return max(float(np.max(np.abs(w.numpy() - b)))
                   for w, b in zip(model.trainable_weights, before, strict=True))

    # Adam moves each weight by ~lr per step whatever the gradient's scale, unless the
    # gradient is clipped far below its epsilon (1e-7): then the clipping is what is seen
    assert largest_update(None) > 1e-4
    assert largest_update(1e-9) < 1e-5
    assert TrainConfig().clipnorm == 1.0  # the default (LOW-DOSE-NLL-PHASE-001)
    with pytest.raises(ConfigError, match="clipnorm"):
        TrainConfig(clipnorm=-1.0)


def test_cosine_schedule_decays_per_step_to_the_final_fraction(data16: object) -> None:
    schedule = CosineLearningRate(2e-3, 0.05, total_steps=9)
    rates = [schedule.rate(step) for step in range(11)]
    assert rates[0] == pytest.approx(2e-3)
    assert rates[4] == pytest.approx(2e-3 * (0.05 + 0.95 * 0.5))  # halfway: the mean of the ends
    assert rates[8] == rates[10] == pytest.approx(1e-4)  # held after the last step
    assert all(a > b for a, b in zip(rates[:8], rates[1:9], strict=True))
    with pytest.raises(ValueError, match="final_fraction"):
        CosineLearningRate(1e-3, 0.0, 10)

    model = build_model(model_config_for(data16, n_filters_scale=1))
    cfg = TrainConfig(nepochs=3, batch_size=16, learning_rate=2e-3, lr_schedule="cosine",
                      lr_final_fraction=0.1)
    history = train(model, data16, cfg)  # 64 groups / 16 = 4 steps per epoch, 12 in all
    expected = CosineLearningRate(2e-3, 0.1, 12)
    assert history.history["lr"] == pytest.approx([expected.rate(3), expected.rate(7), 2e-4])
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(2e-4)
    # a second train call runs its own decay from the peak again
    history = train(model, data16, TrainConfig(nepochs=1, batch_size=16))  # the defaults
    assert TrainConfig().lr_schedule == "cosine" and TrainConfig().learning_rate == 2e-3
    assert history.history["lr"] == pytest.approx([1e-4])
    for bad, match in (({"lr_schedule": "step"}, "lr_schedule"),
                       ({"lr_final_fraction": 1.5}, "lr_final_fraction"),
                       ({"lr_final_fraction": 0}, "lr_final_fraction")):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**bad)


def test_input_pipeline_is_not_autotuned_and_yields_every_group_once_per_epoch() -> None:
    """TRAIN-SPEED-001: tf.data's autotuner halved bf16 epochs on 2 cores; it stays off."""
    n, batch = 10, 4
    diffraction = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    dataset = make_dataset(diffraction, np.zeros((n, 1, 2, 1), np.float32), diffraction, batch,
                           shuffle=True, seed=3, drop_remainder=False)
    assert dataset.options().autotune.enabled is False
    # the prefetch buffer is the fixed PREFETCH_BATCHES, not tf.data.AUTOTUNE (-1)
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    nodes = {node.name: node for node in graph.node}
    (prefetch,) = [node for node in graph.node if node.op == "PrefetchDataset"]
    buffer = nodes[prefetch.input[1].split(":")[0]]
    assert int(tf.make_ndarray(buffer.attr["value"].tensor)) == PREFETCH_BATCHES >= 1
    epochs = [[float(v) for x, _ in dataset for v in x["diffraction"].numpy().ravel()]
              for _ in range(2)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert epochs[0] != epochs[1]  # reshuffled every epoch


RSS = """
import sys
import numpy as np
from ptycho.train import make_dataset, return_freed_heap


def resident_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


if sys.argv[1] == "dataset":
    patterns = np.ones((512, 64, 64, 16), np.float32)  # 128 MB, every page touched
    before = resident_mb()
    dataset = make_dataset(patterns, np.zeros((512, 1, 2, 16), np.float32), patterns, 16,
                           shuffle=True, seed=0, drop_remainder=True)
    for x, t in dataset.take(3):
        assert x["diffraction"].shape == (16, 64, 64, 16) and float(t.numpy().min()) == 1.0
    print(resident_mb() - before)
else:
    blocks = [b"x" * 65536 for _ in range(3000)]  # 190 MB in heap chunks (below mmap's size)
    kept = blocks[::50]  # pins the heap: freeing the rest leaves its pages inside it
    del blocks
    before = resident_mb()
    assert return_freed_heap()
    print(before - resident_mb())
"""


def _run_rss(mode: str) -> float:
    """The MB that ``RSS`` in ``mode`` ("dataset" | "heap") prints, run in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", RSS, mode], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return float(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
def test_the_input_pipeline_holds_no_copy_of_the_training_arrays() -> None:
    """TRAIN-MEMORY-002: tf.constant copies held 134 MB more through 1024-group trainings."""
    grown = _run_rss("dataset")
    assert grown < 60, f"the dataset added {grown:.0f} MB over 128 MB of patterns (a copy: 256)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_pages_go_back_to_the_system() -> None:
    """TRAIN-MEMORY-002: without a trim after each epoch the resident memory grew by 12-30 MB
    an epoch; freed chunks inside the heap stay resident until malloc_trim returns them."""
    returned = _run_rss("heap")
    assert returned > 100, f"only {returned:.0f} MB of ~186 MB of freed heap came back"


def test_training_warns_when_the_probe_is_its_own_twin(data16: object,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    defocused = simulate(SimConfig(N=16, gridsize=2, n_images=16, nphotons=1e6, seed=2,
                                   probe_defocus=2.0))
    messages = {}
    for name, data in (("focused", data16), ("defocused", defocused)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ptycho.train"):
            train(build_model(model_config_for(data, n_filters_scale=1), probe=data.probe),
                  data, TrainConfig(nepochs=1, batch_size=16))
        messages[name] = [r.getMessage() for r in caplog.records if "own twin" in r.getMessage()]
    assert len(messages["focused"]) == 1 and "PROBE-TWIN-001" in messages["focused"][0]
    assert messages["defocused"] == []


def test_mae_loss_trains_on_amplitudes(data16: object) -> None:
    model = build_model(model_config_for(data16, n_filters_scale=1, loss="mae"))
    assert not model.get_layer("sqrt_counts").trainable_weights  # scale unused by MAE
    history = train(model, data16, TrainConfig(nepochs=3, batch_size=16, learning_rate=3e-3))
    losses = history.history["loss"]
    assert losses[-1] < losses[0]


def test_bad_training_data_raises_value_error_naming_shapes(data16: object) -> None:
    model = build_model(model_config_for(data16, n_filters_scale=1))
    cfg = TrainConfig(nepochs=1)

    class Data:
        diffraction = data16.diffraction
        offsets = data16.offsets[:, :, :, :1]
        counts = data16.counts
        intensity_scale = data16.intensity_scale

    with pytest.raises(ValueError, match=r"\(64, 1, 2, 4\).*\(64, 1, 2, 1\)"):
        train(model, Data(), cfg)
    Data.offsets = data16.offsets
    Data.counts = data16.counts[:10]
    with pytest.raises(ValueError, match=r"counts.*\(64, 16, 16, 4\).*\(10, 16, 16, 4\)"):
        train(model, Data(), cfg)
    Data.counts = None
    with pytest.raises(ValueError, match="counts"):
        train(model, Data(), cfg)
    Data.diffraction = data16.diffraction.astype(np.complex64)
    with pytest.raises(ValueError, match="complex64"):
        train(model, Data(), cfg)
    with pytest.raises(ValueError, match="strategy.scope"):
        train(model, data16, cfg, strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))


MIRRORED = r"""
import json, os
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ptycho.config import ModelConfig, SimConfig, TrainConfig
from ptycho.execution import cache_file, cpu_info, cpu_label
from ptycho.model import build_model, model_config_for
from ptycho.physics import simulate
from ptycho.train import train
# a calibration that makes whole-step XLA this CPU's default, as the evidence does on AVX2 CPUs
cache_file(cpu_label(cpu_info()[0]), tf.__version__).write_text(json.dumps(
    {"cpu": cpu_label(cpu_info()[0]), "tensorflow": tf.__version__, "fastest": "xla"}))
data = simulate(SimConfig(N=16, gridsize=2, n_images=16, nphotons=1e6, seed=4))
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = build_model(model_config_for(data, n_filters_scale=1))
    try:
        build_model(ModelConfig(N=16, gridsize=2, jit_compile=True))
        refused = ""
    except ValueError as exc:
        refused = str(exc)
history = train(model, data, TrainConfig(nepochs=2, batch_size=8), strategy=strategy)
out = model.predict({"diffraction": data.diffraction, "offsets": data.offsets}, verbose=0)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"],
                  "path": model.execution.name, "source": model.execution.source,
                  "refused": refused, "finite": bool(np.all(np.isfinite(out["amplitude"])))}))
"""


def test_mirrored_strategy_on_two_logical_cpus_trains_without_whole_step_xla(
        tmp_path: Path) -> None:
    """Whole-step XLA, the default where the evidence or a calibration says so (AVX2 CPUs),
    cannot read one replica's variables from another CPU device: the model trains per-layer."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PTYCHO_EXECUTION_CACHE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", MIRRORED], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["path"] in ("non_xla", "bf16") and report["source"] == "calibration+distributed"
    assert "jit_compile=True" in report["refused"] and "2 CPU devices" in report["refused"]
    assert len(report["loss"]) == 2 and all(np.isfinite(report["loss"]))
    assert report["finite"]


@pytest.mark.slow
def test_training_reconstructs_lines_object_at_high_dose() -> None:
    """N=32, gridsize 2, 1e9 photons, 2000 groups, 20 epochs, default (fastest) path:
    amplitude SSIM ≥ 0.5 on an unseen test set of another seed."""
    from ptycho.inference import reconstruct, scanned_region
    from ptycho.metrics import evaluate

    train_data = simulate(SimConfig(N=32, gridsize=2, n_images=2000, nphotons=1e9, seed=1))
    test_data = simulate(SimConfig(N=32, gridsize=2, n_images=1000, nphotons=1e9, seed=2))
    model = build_model(model_config_for(train_data))
    train(model, train_data, TrainConfig(nepochs=20, batch_size=16))
    obj = reconstruct(model, test_data)
    scores = evaluate(obj, test_data.obj, scanned_region(test_data.coords, obj.shape))
    print("slow reconstruction metrics:", json.dumps(scores))
    assert scores["amp_ssim"] >= 0.5
