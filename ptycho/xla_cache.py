"""A persistent cache of XLA's CPU executables, shared by the processes of one machine.

Each process compiles its XLA clusters (the whole training step on the ``xla`` path, the
overlap block on every path) again, though a study's arms, a test session's subprocesses and
repeated ``ptycho train`` / ``infer`` runs compile the same graphs. TensorFlow can keep the
compiled executables in a directory (``--tf_xla_persistent_cache_directory`` in
``TF_XLA_FLAGS``) and load one instead of compiling when the cluster's signature matches; it
writes each entry to a temporary file and renames it, so a killed process leaves no partial
entry. ``enable(environ)`` sets that flag before the process's first compilation, when
``PTYCHO_XLA_CACHE=on`` (it is off by default, see below):

* the directory is ``<cache root>/xla-<key>``, the key hashing the CPU's model name and flags
  (an executable built for AVX-512 must never run on an AVX2 CPU of the same model name) and
  the TensorFlow version; the cache root is ``ptycho.execution``'s (``PTYCHO_EXECUTION_CACHE``,
  default ``~/.cache/ptycho-harness``; ``off`` disables both caches);
* only CPU executables are kept (device type ``CPU``);
* a user's own ``--tf_xla_persistent_cache_directory`` wins;
* the directory is pruned to ``MAX_BYTES``, oldest entries first, and temporary files older
  than an hour (of a killed writer) are removed.

Like ``XLA_FLAGS``, ``TF_XLA_FLAGS`` is read once per process, when TensorFlow first sets up
its devices; set later, it has no effect. Why off by default: on a 2-core AVX2 AMD EPYC
(2026-12-07; docs/findings.md AVX2-EPYC-001) a loaded executable cut the first-epoch overhead of
the N=64 xla path from 15.6-16.2 s to 5.3-6.4 s, but its steady epochs ran 8-12 % slower than
those of a freshly compiled one, so only runs of a few epochs (tests, repeated short runs) gain.
Nothing happens at import.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from importlib import metadata
from pathlib import Path

__all__ = ["CACHE_FLAG", "MAX_BYTES", "OPT_IN", "cache_directory", "cold", "enable", "prune",
           "tensorflow_version"]

log = logging.getLogger(__name__)

OPT_IN = "PTYCHO_XLA_CACHE"
CACHE_FLAG = "tf_xla_persistent_cache_directory"
DEVICE_FLAG = "tf_xla_persistent_cache_device_types"
CPU_DEVICE = "CPU"
MAX_BYTES = 512 * 2**20
STALE_TMP_S = 3600.0


def cache_directory(root: Path, cpu_model: str, cpu_flags: frozenset[str], tf_version: str) -> Path:
    """``root/xla-<16 hex>``: one directory per CPU model, CPU flags and TensorFlow version."""
    text = "|".join([cpu_model, " ".join(sorted(cpu_flags)), tf_version])
    return root / f"xla-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def prune(directory: Path, max_bytes: int = MAX_BYTES, now: float | None = None) -> list[Path]:
    """Delete the oldest entries (by modification time) of `directory` until the rest take at
    most `max_bytes`, and temporary files older than ``STALE_TMP_S``; returns the deleted paths.
    Files that vanish meanwhile (another process pruning) are skipped."""
    now = time.time() if now is None else now
    entries: list[tuple[float, int, Path]] = []
    for path in directory.iterdir():
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if path.is_file():
            entries.append((stat.st_mtime, stat.st_size, path))
    deleted: list[Path] = []
    total = sum(size for _, size, _ in entries)
    for mtime, size, path in sorted(entries):
        stale_tmp = path.suffix == ".tmp" and now - mtime > STALE_TMP_S
        if total <= max_bytes and not stale_tmp:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        total -= size
        deleted.append(path)
    return deleted


def tensorflow_version() -> str:
    """The installed TensorFlow's version, read from its package metadata (the study's parent
    process never imports TensorFlow); imported only where no distribution is found."""
    for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import tensorflow as tf  # importing does not read TF_XLA_FLAGS; setting up devices does

    return str(tf.__version__)


def cold(flags: str) -> str:
    """`flags` (a ``TF_XLA_FLAGS`` value) with the cache turned off: every XLA cluster is
    compiled, as a benchmark of compile time needs; ``enable`` then adds nothing."""
    kept = [t for t in flags.split() if not t.lstrip("-").startswith((CACHE_FLAG, DEVICE_FLAG))]
    return " ".join([*kept, f"--{CACHE_FLAG}="])


def enable(environ: dict[str, str] | None = None, root: Path | None = None) -> Path | None:
    """Point ``TF_XLA_FLAGS`` (in `environ`, default ``os.environ``) at this machine's cache
    directory (created and pruned) when ``PTYCHO_XLA_CACHE`` is ``on`` there; returns it, or None
    when it is not, caching is off, the user named a directory already, or the directory cannot
    be created (logged, never raised)."""
    from ptycho.execution import cache_root, cpu_info

    env = os.environ if environ is None else environ
    flags = env.get("TF_XLA_FLAGS", "")
    choice = env.get(OPT_IN, "off")
    if choice not in ("on", "off"):
        log.warning("%s=%r is neither on nor off: the XLA executable cache stays off", OPT_IN,
                    choice)
    if choice != "on" or CACHE_FLAG in flags:
        return None
    root = cache_root() if root is None else root
    if root is None:
        return None
    model, cpu_flags = cpu_info()
    directory = cache_directory(root, model, cpu_flags, tensorflow_version())
    try:
        directory.mkdir(parents=True, exist_ok=True)
        prune(directory)
    except OSError as exc:
        log.warning("XLA executable cache off: cannot use %s: %s", directory, exc)
        return None
    env["TF_XLA_FLAGS"] = " ".join([flags, f"--{CACHE_FLAG}={directory}",
                                    f"--{DEVICE_FLAG}={CPU_DEVICE}"]).strip()
    log.debug("TF_XLA_FLAGS=%s", env["TF_XLA_FLAGS"])
    return directory
