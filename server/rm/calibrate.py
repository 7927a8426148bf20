"""`acecoder rm calibrate`: fit a checkpoint's Platt calibration on labelled items.

Input lines, either kind (mixed freely):
  pass-rate rows {"question", "program" | "response", "pass_rate"}: label 1 when pass_rate == 1;
  preference pairs {"instruction" | "question", "input"?, "chosen", "rejected"} (the format of
  `acecoder train rm`): chosen is labelled 1, rejected 0.
The model scores every item in this process; the questions are split by hash, 80% to fit and
20% to measure the Brier score before (sigmoid(raw)) and after, and the calibration is written
as JSON (put it beside the checkpoint as calibration.json, or pass --calibration to `serve rm`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from acecoder.models import calibration as cal

from .config import RewardConfig

EVAL_FRACTION = 0.2
SCORE_CHUNK = 32


def read_labelled(path: Path) -> list[tuple[str, str, int]]:
    """(question, program, label) items of a pass-rate or pairs file."""
    items: list[tuple[str, str, int]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: a record is a JSON object")
        question = row.get("question", row.get("instruction"))
        if row.get("input"):
            question = f"{question}\n\n{row['input']}"
        if not isinstance(question, str):
            raise ValueError(f"{path}:{n}: needs a string \"question\" (or \"instruction\")")
        if "chosen" in row and "rejected" in row:
            items += [(question, str(row["chosen"]), 1), (question, str(row["rejected"]), 0)]
        elif "pass_rate" in row and isinstance(program := row.get("program",
                                                                  row.get("response")), str):
            rate = row["pass_rate"]
            if not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ValueError(f"{path}:{n}: pass_rate must be a number in [0, 1], got "
                                 f"{rate!r}")
            items.append((question, program, int(rate == 1)))
        else:
            raise ValueError(f"{path}:{n}: neither a pass-rate row (question, program or "
                             "response, pass_rate) nor a pair (instruction, chosen, rejected)")
    if not items:
        raise ValueError(f"{path}: no labelled items")
    return items


def held_out(question: str) -> bool:
    h = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big")
    return h / 2**64 < EVAL_FRACTION


async def run(input_path: Path, output_path: Path, config: RewardConfig) -> cal.Calibration:
    """Score the labelled items with `config`'s model, fit, write `output_path`."""
    from .service import RewardService

    items = read_labelled(input_path)
    service = RewardService(replace(config, calibration=None))
    await service.start()
    try:
        raw: list[float] = []
        for k in range(0, len(items), SCORE_CHUNK):
            chunk = items[k:k + SCORE_CHUNK]
            raw += [s.score for s in await service.score([(q, p) for q, p, _ in chunk])]
    finally:
        await service.close()
    fit_i = [i for i, (q, _, _) in enumerate(items) if not held_out(q)]
    eval_i = [i for i, (q, _, _) in enumerate(items) if held_out(q)]
    if not eval_i or len({items[i][2] for i in fit_i}) < 2:  # too few questions to split
        fit_i, eval_i = list(range(len(items))), []
    labels = [y for _, _, y in items]
    fitted = cal.fit_calibration(
        [raw[i] for i in fit_i], [labels[i] for i in fit_i],
        eval_raw=[raw[i] for i in eval_i], eval_labels=[labels[i] for i in eval_i],
        method=f"Platt scaling (logistic regression) on {len(fit_i)} items of "
               f"{input_path.name} (acecoder rm calibrate; "
               f"{'Brier on the fitting items' if not eval_i else 'Brier on held-out questions'})",
        extra={"model": config.model})
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(fitted.to_json())
    return fitted
