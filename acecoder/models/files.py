"""Names every reward-model module agrees on: the metadata file and head prefix of a
checkpoint, the cache directory of converted models and its lock. (Alone here so that loading,
the embedded models' conversion and their packages can import them without importing each
other.)"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

METADATA_FILE = "acecoder_rm.json"
HEAD_PREFIX = "v_head.summary."


def cache_dir() -> Path:
    """Where converted embedded models live: $ACECODER_CACHE, else ~/.cache/acecoder."""
    env = os.environ.get("ACECODER_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "acecoder"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created) for the block: one process builds a cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
