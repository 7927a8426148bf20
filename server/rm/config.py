"""Reward-model server configuration: one frozen dataclass, checked once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

BACKENDS = ("transformers", "vllm")
ENGINES = ("auto", "packed", "batched")
DEFAULT_MODEL = "embedded:smollm2-135m"


@dataclass(frozen=True, kw_only=True)
class RewardConfig:
    model: str = DEFAULT_MODEL
    """Checkpoint directory, hub id, or embedded model (embedded:smollm2-135m,
    embedded:minilm-l6)."""
    backend: str = "transformers"
    """'transformers' or 'vllm' (vllm needs a one-label seq-cls checkpoint: see `rm convert`)."""
    device: str = "cpu"
    """'cpu' or 'cuda' (or 'cuda:N')."""
    dtype: str = "auto"
    """'auto' (float32 on CPU, bfloat16 on GPU), 'float32', 'bfloat16' or 'float16'."""
    max_length: int | None = None
    """Tokens per item; longer items lose question tokens from the left. None: the model's
    own limit, at most 4096."""
    max_items: int = 1024
    """Most items in one Score request (and candidates in one Rerank)."""
    max_text_bytes: int = 1 << 20
    """Largest question or response, bytes of UTF-8."""
    max_batch_tokens: int = 4096
    """Tokens one forward may compute."""
    max_batch_items: int = 64
    """Items in one forward."""
    max_wait_ms: float = 5.0
    """How long a free lane waits for more items to share its forward."""
    max_queue: int = 4096
    """Items that may wait for the model; more get RESOURCE_EXHAUSTED at once."""
    lanes: int = 0
    """Batches computed at once. 0: one per core on CPU (one thread each: on small models
    that beats one batch over all cores), one on GPU."""
    engine: str = "auto"
    """How the transformers backend reuses shared prefixes: 'packed' (new tokens of several
    items in one row over their cached prefixes), 'batched' (question prefixes once, responses
    in one padded forward), or 'auto' (packed on CPU, batched on GPU)."""
    prefix_cache_mb: int = 256
    """Keys and values of shared prefixes kept across batches, MiB (0 turns reuse off)."""
    executor: str | None = None
    """host:port of an executor service, for Rerank requests that carry tests."""
    calibration: str | None = None
    """Platt calibration file (scale, shift; `acecoder rm calibrate` writes one). None: the
    checkpoint's calibration.json, else the embedded model's shipped one, else uncalibrated."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.max_length is not None and self.max_length < 16:
            raise ValueError(f"max_length must be >= 16 tokens, got {self.max_length}")
        for name in ("max_items", "max_text_bytes", "max_batch_tokens", "max_batch_items",
                     "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.lanes < 0:
            raise ValueError(f"lanes must be >= 0, got {self.lanes}")
        if self.prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0, got {self.prefix_cache_mb}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    @property
    def effective_lanes(self) -> int:
        if self.lanes:
            return self.lanes
        return 1 if self.device != "cpu" else max(1, os.cpu_count() or 1)

    @property
    def threads_per_lane(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.effective_lanes)
