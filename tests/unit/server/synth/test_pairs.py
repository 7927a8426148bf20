from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from acecoder.server.synth.pairs import PairRule, hard_subset, make_pairs


def record(rid: str, rates: list[float], model: str = "m") -> dict:  # type: ignore[type-arg]
    return {"id": rid, "source": "test", "question": f"Q {rid}", "test_cases": [],
            "context_messages": [],
            "inferences": [{"model_name": model, "completion_id": k, "completion": f"c{k}",
                            "pass_rate": r} for k, r in enumerate(rates)]}


def test_acecoders_rule() -> None:
    pairs = make_pairs(record("q", [1.0, 0.8, 0.5, 0.0, 0.3, 0.79]))
    got = {(p["chosen"], p["rejected"]) for p in pairs}
    # chosen >= 0.8; rejected > 0; gap >= 0.4
    assert got == {("c0", "c2"), ("c0", "c4"), ("c1", "c4")}
    assert all(p["instruction"] == "Q q" and p["input"] == "" for p in pairs)
    assert [p["id"] for p in pairs] == ["q/0", "q/1", "q/2"]


def test_duplicates_models_and_caps() -> None:
    r = record("q", [1.0, 0.2])
    r["inferences"].append({"model_name": "m", "completion_id": 9, "completion": "c1",
                            "pass_rate": 0.2})  # the same program again
    r["inferences"].append({"model_name": "other", "completion_id": 0, "completion": "x",
                            "pass_rate": 0.1})
    assert [(p["chosen"], p["rejected"]) for p in make_pairs(r)] == [("c0", "c1")]
    across = make_pairs(r, PairRule(same_model=False))
    assert {(p["chosen"], p["rejected"]) for p in across} == {("c0", "c1"), ("c0", "x")}
    assert len(make_pairs(r, PairRule(same_model=False, max_per_question=1))) == 1
    assert make_pairs(r, PairRule(same_model=False, max_per_question=1))[0]["rejected"] == "x"
    with pytest.raises(ValueError, match="min_gap"):
        PairRule(min_gap=2)


def test_hard_subset() -> None:
    records = [record("easy", [1.0, 1.0, 1.0]), record("mixed", [1.0, 0.0, 0.5]),
               record("flat", [0.2, 0.2, 0.2]), record("zero", [0.0, 0.0, 0.0]),
               record("spread", [0.9, 0.0, 0.0])]
    kept = [r["id"] for r in hard_subset(records)]
    # means: easy 1, mixed .5, flat .2, zero 0, spread .3 -> median .3: mixed? no (.5 > .3)
    # low = flat(.0 std), zero(0), spread(.42) -> std median 0 -> all three
    assert kept == ["flat", "zero", "spread"]
    assert hard_subset([]) == []


def test_pairs_and_hard_commands_resume_exactly(tmp_path: Path) -> None:
    src = tmp_path / "acecode.jsonl"
    records = [record(f"q{k}", [1.0, 0.5, 0.3 + k / 100, 0.0]) for k in range(5)]
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "pairs.jsonl"
    cli = [sys.executable, "-m", "acecoder.cli"]
    done = subprocess.run([*cli, "pairs", "--input", str(src), "--output", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    full = out.read_text().splitlines()
    assert len(full) == 10  # per question: (c0, c1), (c0, c2)
    # A crash: the last line torn, an earlier one lost. The rerun repairs both, no duplicates.
    out.write_text("\n".join(full[:3] + full[4:-1]) + "\n" + full[-1][:20])
    again = subprocess.run([*cli, "pairs", "--input", str(src), "--output", str(out), "--quiet"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    lines = out.read_text().splitlines()
    assert sorted(lines) == sorted(full)
    hard_out = tmp_path / "hard.jsonl"
    done = subprocess.run([*cli, "hard", "--input", str(src), "--output", str(hard_out),
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "of 5 questions kept" in done.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "question": "q", "inferences": "no"}) + "\n")
    done = subprocess.run([*cli, "pairs", "--input", str(bad), "--output", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "bad.jsonl:1" in done.stderr and "inferences" in done.stderr


def test_parquet_outputs(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from acecoder.server.synth import offline

    src = tmp_path / "acecode.jsonl"
    src.write_text("".join(json.dumps(record(f"q{k}", [1.0, 0.5, 0.0])) + "\n"
                           for k in range(3)))
    out = tmp_path / "pairs.parquet"
    counts = offline.run_pairs(src, out, progress=False)
    table = pq.read_table(str(out)).to_pylist()
    assert counts["pairs"] == 3 and [r["id"] for r in table] == ["q0/0", "q1/0", "q2/0"]
    assert set(table[0]) == {"id", "instruction", "input", "chosen", "rejected"}
    assert not (tmp_path / "pairs.parquet.partial.jsonl").exists()
    hard = tmp_path / "hard.parquet"
    offline.run_hard(src, hard, progress=False)
    assert {r["id"] for r in pq.read_table(str(hard)).to_pylist()} == {"q0", "q1", "q2"}


@pytest.mark.parametrize("kind", ["pairs", "hard"])
def test_a_stop_is_heard_between_records_and_the_rerun_completes(tmp_path: Path,
                                                                   kind: str) -> None:
    from acecoder.server.synth import offline

    src = tmp_path / "acecode.jsonl"
    src.write_text("".join(json.dumps(record(f"q{k}", [1.0, 0.5, 0.5 - k / 100])) + "\n"
                           for k in range(20)))
    out = tmp_path / "out.parquet"
    run = offline.run_pairs if kind == "pairs" else offline.run_hard
    asked = []

    def stopped() -> bool:  # stop once two records are written
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(offline.Stopped, match="stopped after 2 of"):
        run(src, out, progress=False, stopped=stopped)
    staged = tmp_path / "out.parquet.partial.jsonl"
    lines = staged.read_text().splitlines()
    assert lines and all(json.loads(line) for line in lines) and not out.exists()
    counts = run(src, out, progress=False)
    assert counts["written"] > 0 and not staged.exists()
    import pyarrow.parquet as pq

    ids = [r["id"] for r in pq.read_table(str(out)).to_pylist()]
    assert len(ids) == len(set(ids)) == len(lines) + counts["written"]
