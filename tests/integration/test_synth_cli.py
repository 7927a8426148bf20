"""`acecoder synth` end to end: LLM and proxy on a local protocol server, tests in the real
executor; killed with SIGKILL mid-run, it resumes and writes every seed exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fake_openai import FakeOpenAI


def test_synth_resumes_after_sigkill(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    fake = FakeOpenAI().start()
    try:
        seeds = tmp_path / "seeds.jsonl"
        rows = [{"id": f"s{k}", "question": f"Add two numbers, variant {k}. SCRIPT:many"}
                for k in range(24)]
        rows += [{"id": "bad", "question": "This one fails. SCRIPT:bad-request"},
                 {"id": "prog", "program": "def add(a, b):\n    return a + b\n  # SCRIPT:many"}]
        seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out = tmp_path / "acecode.jsonl"
        dropped = tmp_path / "acecode.jsonl.dropped.jsonl"
        cmd = [sys.executable, "-m", "acecoder.cli", "synth", "--input", str(seeds), "--output",
               str(out), "--llm", fake.url, "--llm-model", "fake", "--executor", server.target,
               "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= 5:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        first = len(out.read_text().splitlines())
        assert 5 <= first < 26
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        kept = [json.loads(line) for line in out.read_text().splitlines()]
        lost = [json.loads(line) for line in dropped.read_text().splitlines()]
        ids = [r["id"] for r in kept] + [r["id"] for r in lost]
        assert sorted(ids) == sorted(r["id"] for r in rows)  # every seed once, none twice
        assert [r["id"] for r in lost] == ["bad"]
        assert lost[0]["reason"].startswith("rewrite_failed: llm: HTTP 400")
        record = kept[0]
        assert set(record) == {"id", "source", "question", "test_cases", "inferences",
                               "context_messages"}
        # the proxy (a correct add) passes 5 of the 6 imagined tests: the wrong one is gone
        assert record["test_cases"] == [f"assert add({k}, 1) == {k + 1}" for k in range(5)]
        assert "kept" in done.stderr and "rejected" in done.stderr and "proxy_failed" in done.stderr
    finally:
        fake.stop()


def test_sample_fills_inferences_with_pass_rates(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    fake = FakeOpenAI().start()
    try:
        src = tmp_path / "acecode.jsonl"
        rec = {"id": "q1", "source": "t", "question": "Write add. SCRIPT:code",
               "test_cases": ["assert add(2, 3) == 5", "assert add(0, 0) == 0"],
               "inferences": [], "context_messages": [
                   {"role": "user", "content": "Write add. SCRIPT:code"}]}
        src.write_text(json.dumps(rec) + "\n")
        out = tmp_path / "sampled.jsonl"
        cmd = [sys.executable, "-m", "acecoder.cli", "sample", "--input", str(src), "--output",
               str(out), "--llm", fake.url, "--llm-model", "policy", "-k", "4",
               "--executor", server.target, "--quiet"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        row = json.loads(out.read_text())
        infs = row["inferences"]
        assert [i["completion_id"] for i in infs] == [0, 1, 2, 3]
        assert all(i["model_name"] == "policy" for i in infs)
        # the fake alternates a right add (both pass) and a * b (only 0 * 0 == 0 passes)
        assert sorted(i["pass_rate"] for i in infs) == [0.5, 0.5, 1.0, 1.0]
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "0 questions sampled, 1 already" in again.stderr
    finally:
        fake.stop()


def test_stages_alone_on_mbpp_with_the_reference_as_proxy(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    """Filter and decontamination without any LLM: MbppBase's own tests, its reference
    solution as the proxy (and a broken test added to each, which the filter must drop)."""
    from acecoder.datasets import load_mbpp

    problems = [p for p in load_mbpp() if p.question and not p.setup][:4]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({
        "id": p.task_id, "question": p.question, "program": p.program, "source": "mbpp",
        "tests": [*p.tests, "assert False"]}) + "\n" for p in problems))

    def synth(out: Path, stages: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "acecoder.cli", "synth", "--input", str(seeds), "--output",
             str(out), "--stages", stages, "--proxy", "reference", "--min-passed", "3",
             "--min-kept", "3", "--executor", server.target, "--quiet"],
            capture_output=True, text=True, timeout=300)

    filtered = synth(tmp_path / "f.jsonl", "filter")
    assert filtered.returncode == 0, filtered.stderr
    rows = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(p.task_id for p in problems)
    by_id = {p.task_id: p for p in problems}
    assert all(r["test_cases"] == list(by_id[r["id"]].tests) for r in rows)
    caught = synth(tmp_path / "d.jsonl", "decontaminate,filter")
    assert caught.returncode == 0, caught.stderr
    dropped = [json.loads(line) for line in
               (tmp_path / "d.jsonl.dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == 4 and all(d["reason"].startswith("contaminated:mbpp:")
                                     for d in dropped)
    bad = synth(tmp_path / "x.jsonl", "rewrite,sampling")
    assert bad.returncode == 2 and "stages must be some of" in bad.stderr
