"""DeepSpeed plumbing shared by the trainers: process group set-up (a lone process needs the
same environment torchrun gives), the DeepSpeed config, and where its C++ ops get built."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_env() -> tuple[int, int, int]:
    """(rank, world size, local rank). Under torchrun or the deepspeed launcher they come
    from the environment; a process started alone becomes rank 0 of 1 on loopback."""
    if "RANK" not in os.environ:
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                           "MASTER_ADDR": "127.0.0.1"})
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    # DeepSpeed JIT-builds C++ ops on first use (tens of seconds each): keep them with the
    # other caches, so that they are built once per checkout, not per process.
    from acecoder.models.files import cache_dir

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir() / "torch_extensions"))
    return (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", "0")))


def ds_config(*, micro_batch: int, grad_accum: int, world: int, zero_stage: int, bf16: bool,
              grad_clip: float, overrides: Path | None = None) -> dict[str, Any]:
    """The DeepSpeed config of a run; a JSON file's values (`overrides`) win, except the
    batch sizes, which the trainer's own settings fix."""
    if not 0 <= zero_stage <= 3:
        raise ValueError(f"zero_stage must be 0-3, got {zero_stage}")
    config: dict[str, Any] = {
        "zero_optimization": {"stage": zero_stage},
        "bf16": {"enabled": bf16},
        "gradient_clipping": grad_clip,
        "steps_per_print": 1 << 30,  # our own logging, not DeepSpeed's
        "wall_clock_breakdown": False,
    }
    if overrides is not None:
        config.update(json.loads(overrides.read_text()))
    config.update({"train_micro_batch_size_per_gpu": micro_batch,
                   "gradient_accumulation_steps": grad_accum,
                   "train_batch_size": micro_batch * grad_accum * world})
    return config
