"""What the trainers share: settings from a preset plus flags, where the model runs, and the
per-step metrics log (JSONL and TensorBoard, written by rank 0)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch


def find_preset(name: str | Path) -> Path:
    """A preset file: a path, or the name of one that ships with acecoder (`rl_cpu_tiny`,
    `rm_acecoder_gpu`, ...; see trainer/configs/)."""
    path = Path(name)
    if path.is_file():
        return path
    from importlib import resources

    bundled = resources.files("acecoder.trainer").joinpath(f"configs/{path.stem}.json")
    if path.parent == Path(".") and bundled.is_file():
        return Path(str(bundled))
    names = sorted(p.name.removesuffix(".json")
                   for p in resources.files("acecoder.trainer").joinpath("configs").iterdir()
                   if p.name.endswith(".json"))
    raise ValueError(f"no preset {name}: give a JSON file, or one of {', '.join(names)}")


def preset_values(cls: type, preset: Path | None, kw: dict[str, Any], *,
                  paths: Iterable[str]) -> dict[str, Any]:
    """A preset JSON's values, then `kw` (None values ignored) on top; unknown names and a
    missing data/output are errors; `paths` become Paths. A preset's keys that start with
    "_" are notes and are dropped."""
    if preset is not None:
        preset = find_preset(preset)
    values: dict[str, Any] = json.loads(preset.read_text()) if preset else {}
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    values.update({k: v for k, v in kw.items() if v is not None})
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}"
                         + (f" in {preset}" if preset else ""))
    missing = [n for n in ("data", "output") if values.get(n) is None]
    if missing:
        raise ValueError(f"{' and '.join(missing)} must be given (flags or preset)")
    for name in paths:
        if values.get(name) is not None:
            values[name] = Path(values[name])
    return values


def placement(device: str, dtype: str, local_rank: int) -> tuple[str, str]:
    """(device, dtype) with "auto" resolved: this process's GPU in bfloat16, else CPU in
    float32."""
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device != "cpu" else "float32"
    return device, dtype


class MetricsLog:
    """metrics.jsonl and tensorboard/ under `output`, on rank 0 (other ranks write nothing).
    Rows after `resume_after` (a resumed run's step; 0 for a fresh run) are removed, from the
    JSONL and from TensorBoard: an earlier run's, or those a killed run wrote after its last
    checkpoint. So both always read as one run."""

    def __init__(self, output: Path, rank: int, resume_after: int = 0) -> None:
        self.file: Any = None
        self.tb: Any = None
        if rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter

        output.mkdir(parents=True, exist_ok=True)
        path = output / "metrics.jsonl"
        if path.exists():
            rows = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_after]
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(r + "\n" for r in rows))
            os.replace(tmp, path)
        self.file = path.open("a", encoding="utf-8")
        self.tb = SummaryWriter(str(output / "tensorboard"), purge_step=resume_after + 1)

    def write(self, row: dict[str, Any]) -> None:
        """One row (it has a "step"); its finite numbers with a "/" in their name, or lr, go
        to TensorBoard."""
        if self.file is None:
            return
        # a mean of nothing is NaN: JSON has no NaN, so it is written as null
        plain = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                 for k, v in row.items()}
        self.file.write(json.dumps(plain) + "\n")
        self.file.flush()
        for key, value in row.items():
            if (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and ("/" in key or key == "lr")):
                self.tb.add_scalar(key, value, row["step"])
        self.tb.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.tb.close()
            self.file = None


def destroy(*engines: Any) -> None:
    """Free DeepSpeed engines' hooks and buffers."""
    for engine in engines:
        destroy = getattr(engine, "destroy", None)
        if destroy is not None:
            destroy()
