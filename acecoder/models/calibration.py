"""Platt calibration of reward-model scores: p(correct) = sigmoid(scale * raw + shift).

A raw AceCode-RM score is uncentred (the embedded model's lie around -20), so sigmoid(raw)
says nothing; a calibration fitted by logistic regression on labelled items (correct = 1,
wrong = 0) turns it into an estimate of the probability that the program is correct. It lives
in ``calibration.json`` beside a checkpoint (``acecoder rm calibrate`` writes one); the
embedded SmolLM2 head ships its own (``heads/smollm2-135m.calibration.json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CALIBRATION_FILE = "calibration.json"


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """A fitted Platt scaling of one model's raw scores."""

    scale: float
    """Multiplies the raw score."""
    shift: float
    """Added after scaling: the calibrated score is scale * raw + shift (a logit)."""
    n: int = 0
    """Labelled items it was fitted on."""
    positives: int = 0
    """Of which correct (label 1)."""
    method: str = ""
    """How it was fitted, in words (data, split)."""
    brier_before: float | None = None
    """Brier score of sigmoid(raw) on the evaluation items."""
    brier_after: float | None = None
    """Brier score of the calibrated probability on the evaluation items."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (evaluation sizes, commit)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and math.isfinite(self.shift)):
            raise ValueError(f"calibration scale and shift must be finite, got "
                             f"scale={self.scale}, shift={self.shift}")

    def logit(self, raw: float) -> float:
        """The calibrated score: sigmoid of it estimates p(program is correct)."""
        return self.scale * raw + self.shift

    def probability(self, raw: float) -> float:
        return sigmoid(self.logit(raw))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, row: dict[str, Any], *, where: str = "calibration") -> Calibration:
        try:
            scale, shift = float(row["scale"]), float(row["shift"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: needs numeric 'scale' and 'shift', got "
                             f"{sorted(row) if isinstance(row, dict) else row!r}") from None
        known = {"n", "positives", "method", "brier_before", "brier_after", "extra"}
        return cls(scale=scale, shift=shift, **{k: v for k, v in row.items() if k in known})


def read(path: Path) -> Calibration:
    """Read a calibration file; ValueError says what is wrong with it."""
    try:
        row = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read calibration {path}: {exc}") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}: a calibration is a JSON object with scale and shift")
    return Calibration.from_dict(row, where=str(path))


def brier(probabilities: Sequence[float], labels: Sequence[int]) -> float:
    """Mean squared error of probabilities against 0/1 labels (0 is perfect)."""
    if len(probabilities) != len(labels) or not labels:
        raise ValueError(f"brier needs as many probabilities as labels (at least one), got "
                         f"{len(probabilities)} and {len(labels)}")
    return sum((p - y) ** 2 for p, y in zip(probabilities, labels, strict=True)) / len(labels)


def fit(raw: Sequence[float], labels: Sequence[int], *, iterations: int = 100,
        ridge: float = 1e-6) -> tuple[float, float]:
    """Platt's (scale, shift) by maximum likelihood (Newton's method on logistic regression,
    with Platt's smoothed targets so that separable data still gives finite parameters)."""
    if len(raw) != len(labels):
        raise ValueError(f"fit needs as many scores as labels, got {len(raw)} and {len(labels)}")
    pos = sum(1 for y in labels if y == 1)
    neg = sum(1 for y in labels if y == 0)
    if pos + neg != len(labels):
        raise ValueError("labels must be 0 or 1")
    if pos == 0 or neg == 0:
        raise ValueError(f"fitting a calibration needs both correct and wrong items, got "
                         f"{pos} correct and {neg} wrong")
    hi, lo = (pos + 1) / (pos + 2), 1 / (neg + 2)
    targets = [hi if y == 1 else lo for y in labels]
    mean = sum(raw) / len(raw)
    spread = math.sqrt(sum((x - mean) ** 2 for x in raw) / len(raw)) or 1.0
    xs = [(x - mean) / spread for x in raw]  # standardised: Newton converges from (0, 0)
    a, b = 0.0, math.log((pos + 1) / (neg + 1))
    for _ in range(iterations):
        g_a = g_b = h_aa = h_ab = h_bb = 0.0
        for x, t in zip(xs, targets, strict=True):
            p = sigmoid(a * x + b)
            d, w = p - t, max(p * (1 - p), 1e-12)
            g_a += d * x
            g_b += d
            h_aa += w * x * x
            h_ab += w * x
            h_bb += w
        h_aa += ridge
        h_bb += ridge
        det = h_aa * h_bb - h_ab * h_ab
        step_a = (h_bb * g_a - h_ab * g_b) / det
        step_b = (h_aa * g_b - h_ab * g_a) / det
        a, b = a - step_a, b - step_b
        if abs(step_a) + abs(step_b) < 1e-10:
            break
    return a / spread, b - a * mean / spread


def fit_calibration(raw: Sequence[float], labels: Sequence[int], *, method: str,
                    eval_raw: Sequence[float] = (), eval_labels: Sequence[int] = (),
                    extra: dict[str, Any] | None = None) -> Calibration:
    """Fit on (raw, labels); the Brier scores are measured on the evaluation items when given,
    else on the fitting items."""
    scale, shift = fit(raw, labels)
    ev_raw, ev_labels = (eval_raw, eval_labels) if eval_labels else (raw, labels)
    fitted = Calibration(scale=scale, shift=shift)
    return Calibration(
        scale=scale, shift=shift, n=len(labels), positives=sum(labels), method=method,
        brier_before=round(brier([sigmoid(x) for x in ev_raw], ev_labels), 6),
        brier_after=round(brier([fitted.probability(x) for x in ev_raw], ev_labels), 6),
        extra={"evaluated_on": len(ev_labels), **(extra or {})})


def reliability(probabilities: Sequence[float], labels: Sequence[int],
                bins: int = 10) -> list[tuple[float, float, int, float, float]]:
    """Per equal-width bin of predicted probability: (low, high, items, mean predicted,
    observed fraction correct); empty bins are left out."""
    rows = []
    for k in range(bins):
        low, high = k / bins, (k + 1) / bins
        inside = [(p, y) for p, y in zip(probabilities, labels, strict=True)
                  if low <= p < high or (k == bins - 1 and p == 1.0)]
        if inside:
            rows.append((low, high, len(inside), sum(p for p, _ in inside) / len(inside),
                         sum(y for _, y in inside) / len(inside)))
    return rows


EMBEDDED_CALIBRATIONS = {"embedded:smollm2-135m": "heads/smollm2-135m.calibration.json"}
"""Calibrations shipped beside the embedded models' trained heads."""


def for_model(model: str, path: str, *, head_trained: bool,
              explicit: str | None = None) -> Calibration | None:
    """The calibration a served model carries: `explicit` (a file named on the command line),
    else ``calibration.json`` in its checkpoint directory, else the one shipped beside an
    embedded model's trained head; None when it has none (scores are served uncalibrated)."""
    if explicit:
        return read(Path(explicit))
    beside = Path(path) / CALIBRATION_FILE
    if beside.is_file():
        return read(beside)
    shipped = EMBEDDED_CALIBRATIONS.get(model)
    if shipped and head_trained:  # fitted for the shipped head, not a random one
        from importlib import resources

        found = resources.files("acecoder.models").joinpath(shipped)
        if found.is_file():
            return read(Path(str(found)))
    return None
