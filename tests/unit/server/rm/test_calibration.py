"""Platt calibration: the fit, the files, and the service serving calibrated probabilities."""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path

import pytest

from acecoder.models import calibration as cal
from acecoder.server.rm import calibrate
from acecoder.server.rm.config import RewardConfig
from acecoder.server.rm.service import UNCALIBRATED, RewardService
from tests.unit.server.rm.test_rm_service import LengthBackend


def test_the_fit_recovers_known_platt_parameters() -> None:
    rng = random.Random(7)
    scale, shift = 0.5, 11.0  # raw scores around -22, like the embedded model's
    raw = [rng.gauss(-22.0, 4.0) for _ in range(20000)]
    labels = [int(rng.random() < cal.sigmoid(scale * x + shift)) for x in raw]
    got_scale, got_shift = cal.fit(raw, labels)
    assert got_scale == pytest.approx(scale, abs=0.03)
    assert got_shift == pytest.approx(shift, abs=0.7)
    fitted = cal.fit_calibration(raw, labels, method="synthetic")
    assert fitted.brier_after < fitted.brier_before  # sigmoid(raw) is ~0 for everything
    assert fitted.n == 20000 and fitted.positives == sum(labels)


def test_separable_data_still_gives_finite_parameters_and_bad_labels_are_refused() -> None:
    scale, shift = cal.fit([-3.0, -2.0, 2.0, 3.0], [0, 0, 1, 1])
    assert math.isfinite(scale) and scale > 0 and math.isfinite(shift)
    with pytest.raises(ValueError, match="both correct and wrong"):
        cal.fit([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        cal.fit([1.0, 2.0], [1, 2])
    with pytest.raises(ValueError, match="as many scores as labels"):
        cal.fit([1.0], [1, 0])
    with pytest.raises(ValueError, match="as many probabilities"):
        cal.brier([], [])


def test_reliability_bins() -> None:
    rows = cal.reliability([0.05, 0.15, 0.95, 1.0], [0, 1, 1, 1])
    assert [(lo, n, obs) for lo, _, n, _, obs in rows] == [(0.0, 1, 0.0), (0.1, 1, 1.0),
                                                           (0.9, 2, 1.0)]


def test_calibration_files(tmp_path: Path) -> None:
    good = tmp_path / "c.json"
    good.write_text(cal.Calibration(scale=2.0, shift=-1.0, n=4, method="m").to_json())
    assert cal.read(good).probability(0.5) == pytest.approx(0.5)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scale": "x"}))
    with pytest.raises(ValueError, match="numeric 'scale' and 'shift'"):
        cal.read(bad)
    bad.write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        cal.read(bad)
    with pytest.raises(ValueError, match="cannot read calibration"):
        cal.read(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="finite"):
        cal.Calibration(scale=math.inf, shift=0.0)


def test_which_calibration_a_model_carries(tmp_path: Path) -> None:
    explicit = tmp_path / "explicit.json"
    explicit.write_text(cal.Calibration(scale=3.0, shift=0.0).to_json())
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    assert cal.for_model(str(ckpt), str(ckpt), head_trained=True) is None
    (ckpt / cal.CALIBRATION_FILE).write_text(cal.Calibration(scale=2.0, shift=0.0).to_json())
    assert cal.for_model(str(ckpt), str(ckpt), head_trained=True).scale == 2.0  # type: ignore[union-attr]
    assert cal.for_model(str(ckpt), str(ckpt), head_trained=True,
                         explicit=str(explicit)).scale == 3.0  # type: ignore[union-attr]
    shipped = cal.for_model("embedded:smollm2-135m", str(tmp_path), head_trained=True)
    assert shipped is not None and shipped.brier_after < shipped.brier_before  # type: ignore[operator]
    # fitted for the shipped head: a random one (head missing) serves uncalibrated
    assert cal.for_model("embedded:smollm2-135m", str(tmp_path), head_trained=False) is None


def test_the_embedded_calibration_puts_its_raw_scores_in_a_sensible_range() -> None:
    c = cal.for_model("embedded:smollm2-135m", "-", head_trained=True)
    assert c is not None and c.scale > 0
    # raw scores seen on MbppBase code: a correct add -22.5, a wrong one -24.1
    good, bad = c.probability(-22.5), c.probability(-24.1)
    assert 0.05 < bad < good < 0.99
    assert cal.sigmoid(-22.5) < 1e-9  # what mix and the gateway used before


def test_the_service_serves_calibrated_probabilities(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(cal.Calibration(scale=1.0, shift=-2.0).to_json())

    async def main() -> None:
        service = RewardService(RewardConfig(calibration=str(path)), backend=LengthBackend())
        await service.start()
        got = await service.score([("q", "ab"), ("q", "abcd")])
        assert [s.probability for s in got] == pytest.approx([0.5, cal.sigmoid(2.0)])
        assert service.warning == ""
        plain = RewardService(RewardConfig(), backend=LengthBackend())
        await plain.start()
        got = await plain.score([("q", "ab")])
        assert got[0].probability == pytest.approx(cal.sigmoid(2.0))
        assert plain.calibration is None and UNCALIBRATED in plain.warning
        for s in (service, plain):
            await s.close()

    asyncio.run(main())


def test_reading_labelled_items(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"question": "q1", "program": "p", "pass_rate": 1.0},
        {"question": "q1", "response": "r", "pass_rate": 0.5},
        {"instruction": "q2", "input": "x", "chosen": "c", "rejected": "w"},
    ]) + "\n")
    assert calibrate.read_labelled(f) == [("q1", "p", 1), ("q1", "r", 0), ("q2\n\nx", "c", 1),
                                          ("q2\n\nx", "w", 0)]
    for row, message in (({"question": "q", "program": "p", "pass_rate": 2}, "in \\[0, 1\\]"),
                         ({"question": "q", "program": "p"}, "neither a pass-rate row"),
                         ({"program": "p", "pass_rate": 1}, "string \"question\"")):
        f.write_text(json.dumps(row) + "\n")
        with pytest.raises(ValueError, match=message):
            calibrate.read_labelled(f)
    f.write_text("{oops\n")
    with pytest.raises(ValueError, match="not JSON"):
        calibrate.read_labelled(f)
    f.write_text("\n")
    with pytest.raises(ValueError, match="no labelled items"):
        calibrate.read_labelled(f)
