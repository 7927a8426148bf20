"""Names every reward-model module agrees on: the metadata file and head prefix of a
checkpoint, and the cache directory of converted models. (Alone here so that loading and the
embedded models' conversion can import them without importing each other.)"""

from __future__ import annotations

import os
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
