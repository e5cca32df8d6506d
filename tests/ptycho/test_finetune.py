"""ptycho.finetune's record of what a model was trained on (pure logic on real files; the
fine-tuning itself runs in tests/ptycho/test_cli.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ptycho.finetune import data_fingerprint, trained_on, training_record


def test_the_record_chains_every_file_a_model_was_trained_on(tmp_path: Path) -> None:
    first, second, third = (tmp_path / f"{name}.npz" for name in ("first", "second", "third"))
    for i, path in enumerate((first, second, third)):
        path.write_bytes(bytes([i]) * 3000)
    assert data_fingerprint(first) == hashlib.sha256(bytes([0]) * 3000).hexdigest()
    base = {"saved_utc": "2026-12-06T00:00:00Z", "training": training_record(first)}
    tuned = {"training": training_record(second, tmp_path / "base.zip", base)}
    assert tuned["training"]["init_model"] == {"archive": str(tmp_path / "base.zip"),
                                               "saved_utc": "2026-12-06T00:00:00Z",
                                               "training": base["training"]}
    assert trained_on(tuned, second) and trained_on(tuned, first)
    assert trained_on(tuned, third) is False and trained_on(base, second) is False
    renamed = tmp_path / "copy.npz"  # the bytes decide, not the name
    renamed.write_bytes(first.read_bytes())
    assert trained_on(base, renamed) is True


def test_an_archive_without_a_record_says_unknown(tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    data.write_bytes(b"x")
    assert trained_on({"format": "ptycho-harness-model"}, data) is None
    tuned = {"training": training_record(data, tmp_path / "old.zip", {})}  # from an old archive
    assert tuned["training"]["init_model"]["training"] is None
    other = tmp_path / "other.npz"
    other.write_bytes(b"y")
    assert trained_on(tuned, data) is True
    assert trained_on(tuned, other) is None  # the old archive may have seen it
