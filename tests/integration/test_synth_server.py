"""The synthesis server as users run it: a real process on loopback, its LLM and proxy on a
local OpenAI-protocol server, tests in the real executor; streams, jobs, metrics, and a job
that survives a SIGKILL of the server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from acecoder.clients import SynthesisClient
from acecoder.clients.synthesis import state_name
from acecoder.serving import spawn_server
from tests.fake_openai import MANY_TESTS, FakeOpenAI


@dataclass
class SynthServer:
    proc: subprocess.Popen[str]
    target: str
    metrics: str


def start_synth(fake: FakeOpenAI, executor: str, state: Path, data: Path) -> SynthServer:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "synth", "--port", "0",
           "--metrics-port", "0", "--llm", fake.url, "--llm-model", "fake", "--executor",
           executor, "--state-dir", str(state), "--data-dir", str(data), "--max-queue", "2",
           "--max-inflight", "2"]
    proc, m = spawn_server(cmd, r"listening on (\S+) .*metrics on :(\d+)",
                           "the synthesis server")
    return SynthServer(proc, m.group(1), f"http://127.0.0.1:{m.group(2)}/metrics")


def stop(s: SynthServer) -> int:
    if s.proc.poll() is None:
        s.proc.send_signal(signal.SIGTERM)
    return s.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    f = FakeOpenAI().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def synth(fake: FakeOpenAI, server, data: Path) -> Iterator[SynthServer]:  # type: ignore[no-untyped-def]
    s = start_synth(fake, server.target, data / "state", data)
    yield s
    assert stop(s) == 0


@pytest.fixture(scope="module")
def client(synth: SynthServer) -> Iterator[SynthesisClient]:
    with SynthesisClient(synth.target, timeout=30) as c:
        yield c


def write_seeds(path: Path, n: int, script: str = "many", prefix: str = "s") -> list[str]:
    ids = [f"{prefix}{k}" for k in range(n)]
    path.write_text("".join(json.dumps({"id": i, "question": f"Add two numbers ({i}). "
                                        f"SCRIPT:{script}"}) + "\n" for i in ids))
    return ids


def ids_in(*paths: Path) -> list[str]:
    return [json.loads(line)["id"] for p in paths if p.exists()
            for line in p.read_text().splitlines()]


def test_health_is_serving(synth: SynthServer) -> None:
    with grpc.insecure_channel(synth.target) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="acecoder.v1.Synthesis"), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_synthesize_streams_each_stage_then_the_record(client: SynthesisClient) -> None:
    events = list(client.synthesize("q1", question="Add two numbers. SCRIPT:many",
                                    source="unit", request_id="r-1"))
    assert [e.WhichOneof("event") for e in events] == [
        "rewritten", "decontaminated", "proxy", "filtered", "outcome"]
    assert all(e.request_id == "r-1" for e in events)
    rewritten, decon, proxy, filtered, outcome = events
    assert list(rewritten.rewritten.tests) == MANY_TESTS["tests"]
    assert rewritten.rewritten.llm.prompt_tokens == 11  # the fake's usage, carried through
    assert decon.decontaminated.clean
    assert "def add" in proxy.proxy.program
    assert [(d.test, d.reason) for d in filtered.filtered.dropped] == [
        ("assert add(2, 2) == 5", "FAILED")]
    o = outcome.outcome
    assert o.kept and o.tests_in == 6 and o.tests_kept == 5
    assert o.record.id == "q1" and o.record.source == "unit"
    assert list(o.record.test_cases) == MANY_TESTS["tests"][:5]
    assert o.record.context_messages[0].role == "user"


def test_a_benchmark_look_alike_is_dropped_with_its_match(client: SynthesisClient) -> None:
    events = list(client.synthesize("q2", question="Anything. SCRIPT:humaneval"))
    assert [e.WhichOneof("event") for e in events] == ["rewritten", "decontaminated", "outcome"]
    d = events[1].decontaminated
    assert not d.clean and (d.benchmark, d.item_id) == ("humaneval", "HumanEval/0")
    assert d.overlap == pytest.approx(1.0)
    assert events[-1].outcome.reason == "contaminated:humaneval:HumanEval/0"
    assert not events[-1].outcome.kept


@pytest.mark.parametrize("kw, message", [
    pytest.param({"seed_id": "", "question": "q"}, "seed.id is empty", id="no-id"),
    pytest.param({"seed_id": "x"}, "a question, a program, or both", id="empty-seed"),
    pytest.param({"seed_id": "x", "question": "q", "n_tests": 0}, "n_tests", id="n-tests"),
    pytest.param({"seed_id": "x", "question": "q", "decontam_threshold": 1.5},
                 "decontam_threshold", id="threshold"),
])
def test_bad_requests_are_invalid_argument(client: SynthesisClient, kw, message: str) -> None:  # type: ignore[no-untyped-def]
    seed_id = kw.pop("seed_id")
    with pytest.raises(grpc.RpcError) as err:
        list(client.synthesize(seed_id, **kw))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


@pytest.mark.slow
def test_a_full_queue_is_resource_exhausted(synth: SynthServer) -> None:
    # 2 run and 2 wait (--max-inflight 2 --max-queue 2); the fifth is refused
    from acecoder.v1 import synthesis_pb2 as pb
    from acecoder.v1 import synthesis_pb2_grpc as pb_grpc

    with grpc.insecure_channel(synth.target) as ch:
        stub = pb_grpc.SynthesisStub(ch)
        calls = [stub.Synthesize(pb.SynthesizeRequest(seed=pb.Seed(
            id=f"slow{k}", question="Slow. SCRIPT:slow")), timeout=60) for k in range(4)]
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Synthesize(pb.SynthesizeRequest(seed=pb.Seed(id="x", question="q")),
                                 timeout=60))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert all(list(c)[-1].WhichOneof("event") == "outcome" for c in calls)  # admitted: done


def test_a_deadline_ends_the_stream(client: SynthesisClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(client.synthesize("late", question="Slow. SCRIPT:slow", deadline=0.5))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_job_runs_to_the_end_with_its_counts(client: SynthesisClient, data: Path) -> None:
    ids = write_seeds(data / "seeds.jsonl", 6)
    with (data / "seeds.jsonl").open("a") as f:
        f.write(json.dumps({"id": "bad", "question": "Fails. SCRIPT:bad-request"}) + "\n")
    job = client.submit_job("seeds.jsonl", "out/acecode.jsonl", job_id="first")
    assert job.job_id == "first" and state_name(job.state) in ("QUEUED", "RUNNING")
    job = client.wait_job("first", timeout=120)
    assert state_name(job.state) == "SUCCEEDED", job.error
    assert (job.seeds, job.done, job.kept) == (7, 7, 6)
    assert dict(job.dropped) == {"rewrite_failed": 1}
    assert job.tests_in == 6 * 6 and job.tests_kept == 6 * 5
    assert job.tests_rejected["proxy_failed"] == 6
    out = data / "out" / "acecode.jsonl"
    assert sorted(ids_in(out)) == sorted(ids)
    assert ids_in(data / "out" / "acecode.jsonl.dropped.jsonl") == ["bad"]
    assert any(j.job_id == "first" for j in client.list_jobs())
    again = client.submit_job("seeds.jsonl", "out/acecode.jsonl", job_id="first")
    assert state_name(again.state) == "SUCCEEDED"  # the same job back, not a second run


def test_job_requests_are_checked(client: SynthesisClient, data: Path) -> None:
    write_seeds(data / "few.jsonl", 1)
    cases = [
        (lambda: client.get_job("nope"), grpc.StatusCode.NOT_FOUND, "no job"),
        (lambda: client.cancel_job("nope"), grpc.StatusCode.NOT_FOUND, "no job"),
        (lambda: client.submit_job("/etc/passwd", "x.jsonl"), grpc.StatusCode.INVALID_ARGUMENT,
         "outside the server's data directory"),
        (lambda: client.submit_job("few.jsonl", "../escape.jsonl"),
         grpc.StatusCode.INVALID_ARGUMENT, "outside"),
        (lambda: client.submit_job("missing.jsonl", "x.jsonl"), grpc.StatusCode.INVALID_ARGUMENT,
         "no such file"),
        (lambda: client.submit_job("few.jsonl", "x.jsonl", job_id="a/b"),
         grpc.StatusCode.INVALID_ARGUMENT, "job_id"),
        (lambda: client.submit_job("few.jsonl", "x.jsonl", n_tests=500),
         grpc.StatusCode.INVALID_ARGUMENT, "n_tests"),
    ]
    for call, code, message in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code and message in err.value.details()


def test_bad_input_fails_the_job_with_the_reason(client: SynthesisClient, data: Path) -> None:
    (data / "broken.jsonl").write_text('{"id": "a", "question": "q"}\nnot json\n')
    job = client.wait_job(client.submit_job("broken.jsonl", "broken.out.jsonl").job_id,
                          timeout=60)
    assert state_name(job.state) == "FAILED"
    assert "broken.jsonl:2: not valid JSON" in job.error


def test_cancel_then_resubmit_resumes_without_duplicates(client: SynthesisClient,
                                                         data: Path) -> None:
    ids = write_seeds(data / "long.jsonl", 30, prefix="L")
    client.submit_job("long.jsonl", "long.jsonl.out", job_id="long")
    with pytest.raises(grpc.RpcError) as err:  # one writer per output
        client.submit_job("long.jsonl", "long.jsonl.out")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    out = data / "long.jsonl.out"
    deadline = time.monotonic() + 60
    while len(ids_in(out)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    job = client.cancel_job("long")
    assert state_name(job.state) == "CANCELLED"
    first, size = len(ids_in(out)), out.stat().st_size
    assert 3 <= first < 30
    time.sleep(1.0)
    assert out.stat().st_size == size  # nothing written once the cancel has answered
    job = client.wait_job(client.submit_job("long.jsonl", "long.jsonl.out",
                                            job_id="long").job_id, timeout=120)
    assert state_name(job.state) == "SUCCEEDED" and job.runs == 2
    assert sorted(ids_in(out)) == sorted(ids) and job.kept == 30


def _metric(synth: SynthServer, name: str, labels: str = "") -> float:
    text = httpx.get(synth.metrics, timeout=10).text
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in metrics"
    return float(m.group(1))


def test_metrics(synth: SynthServer, client: SynthesisClient) -> None:
    before = _metric(synth, "acecoder_synth_questions_total", '{reason="",result="kept"}')
    list(client.synthesize("m1", question="Add. SCRIPT:many"))
    assert _metric(synth, "acecoder_synth_questions_total",
                   '{reason="",result="kept"}') == before + 1
    assert _metric(synth, "acecoder_synth_tests_total", '{stage="kept"}') >= 5
    assert _metric(synth, "acecoder_synth_tests_rejected_total",
                   '{reason="proxy_failed"}') >= 1
    assert _metric(synth, "acecoder_synth_llm_tokens_total",
                   '{kind="prompt",role="rewrite"}') >= 11
    assert _metric(synth, "acecoder_synth_stage_seconds_count", '{stage="filter"}') >= 1
    assert _metric(synth, "acecoder_synth_requests_total",
                   '{code="OK",method="Synthesize"}') >= 1


@pytest.mark.slow
def test_a_job_survives_sigkill_of_the_server(fake: FakeOpenAI, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = write_seeds(tmp_path / "seeds.jsonl", 40, prefix="k")
    ids += write_seeds(tmp_path / "bad.jsonl", 2, script="bad-request", prefix="b")
    with (tmp_path / "seeds.jsonl").open("a") as f:
        f.write((tmp_path / "bad.jsonl").read_text())
    out = tmp_path / "acecode.jsonl"
    state = tmp_path / "state"
    s = start_synth(fake, server.target, state, tmp_path)
    try:
        with SynthesisClient(s.target) as c:
            c.submit_job("seeds.jsonl", "acecode.jsonl", job_id="big")
        deadline = time.monotonic() + 60
        while len(ids_in(out)) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(30)
    first = len(ids_in(out))
    assert 5 <= first < 42
    assert json.loads((state / "big.json").read_text())["state"] == "RUNNING"
    s = start_synth(fake, server.target, state, tmp_path)  # resumes the job by itself
    try:
        with SynthesisClient(s.target) as c:
            job = c.wait_job("big", timeout=120)
        assert state_name(job.state) == "SUCCEEDED" and job.runs == 2
        assert job.done == 42 and job.kept == 40 and dict(job.dropped) == {"rewrite_failed": 2}
        written = ids_in(out, tmp_path / "acecode.jsonl.dropped.jsonl")
        assert sorted(written) == sorted(ids)  # every seed exactly once
    finally:
        assert stop(s) == 0


def test_the_synth_command_runs_a_job_on_the_server(synth: SynthServer, data: Path) -> None:
    ids = write_seeds(data / "cli.jsonl", 3, prefix="c")

    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "acecoder.cli", "synth", "--server",
                               synth.target, "--quiet", *extra], capture_output=True, text=True,
                              timeout=120)

    done = cli("--input", "cli.jsonl", "--output", "cli.out.jsonl", "--job-id", "cli")
    assert done.returncode == 0, done.stderr
    assert "3 questions kept" in done.stderr and "rejected" in done.stderr
    assert sorted(ids_in(data / "cli.out.jsonl")) == sorted(ids)
    refused = cli("--input", "/etc/passwd", "--output", "x.jsonl")
    assert refused.returncode == 2 and "outside the server's data directory" in refused.stderr
    (data / "cli-bad.jsonl").write_text("not json\n")
    failed = cli("--input", "cli-bad.jsonl", "--output", "cli-bad.out.jsonl")
    assert failed.returncode == 1 and "FAILED" in failed.stderr and "not valid JSON" in failed.stderr


def test_stages_run_alone_with_the_seeds_own_tests(client: SynthesisClient,
                                                    fake: FakeOpenAI) -> None:
    program = "def add(a, b):\n    return a + b\n"
    tests = [f"assert add({k}, 2) == {k + 2}" for k in range(5)] + [
        "assert add(1, 1) == 3", "import os"]
    calls = sum(fake.calls.values())
    events = list(client.synthesize("own", question="Add two numbers a and b.", program=program,
                                    tests=tests, stages=["filter"], proxy_reference=True))
    assert sum(fake.calls.values()) == calls  # no LLM call: no rewrite, the reference as proxy
    assert [e.WhichOneof("event") for e in events] == ["rewritten", "proxy", "filtered",
                                                       "outcome"]
    assert [(r.test, r.reason) for r in events[0].rewritten.rejected] == [("import os",
                                                                          "imports")]
    assert events[1].proxy.program == program.strip()
    o = events[-1].outcome
    assert o.kept and list(o.record.test_cases) == tests[:5] and o.record.question.startswith(
        "Add two numbers")
    only_decontam = list(client.synthesize("d", question="Anything at all here.",
                                           tests=["assert 1 == 1"], stages=["decontaminate"]))
    assert [e.WhichOneof("event") for e in only_decontam] == ["rewritten", "decontaminated",
                                                              "outcome"]
    assert only_decontam[-1].outcome.kept
    with pytest.raises(grpc.RpcError) as err:
        list(client.synthesize("x", question="q", stages=["rewrite", "sample"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sample" in err.value.details()


@pytest.mark.slow
def test_sample_pairs_and_hard_run_as_jobs(client: SynthesisClient, data: Path) -> None:
    records = [{"id": f"q{k}", "source": "t", "question": f"Write add {k}. SCRIPT:code",
                "test_cases": ["assert add(2, 3) == 5", "assert add(0, 0) == 0"],
                "inferences": [], "context_messages": [
                    {"role": "user", "content": f"Write add {k}. SCRIPT:code"}]}
               for k in range(3)]
    (data / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    job = client.wait_job(client.submit_job("records.jsonl", "sampled.jsonl", kind="sample",
                                            k=4, temperature=0.5).job_id, timeout=120)
    assert state_name(job.state) == "SUCCEEDED", job.error
    assert job.kind == "sample" and (job.seeds, job.done) == (3, 3)
    assert dict(job.counts) == {"questions": 3, "skipped": 0, "sampled": 3, "done": 3}
    rows = [json.loads(line) for line in (data / "sampled.jsonl").read_text().splitlines()]
    assert all(len(r["inferences"]) == 4 for r in rows)
    assert {i["model_name"] for r in rows for i in r["inferences"]} == {"fake"}
    # the fake alternates a right add (pass rate 1) and a * b (0.5): pairs for each question
    rates = sorted(i["pass_rate"] for r in rows for i in r["inferences"])
    assert set(rates) == {0.5, 1.0}
    job = client.wait_job(client.submit_job("sampled.jsonl", "pairs.jsonl", kind="pairs").job_id,
                          timeout=60)
    assert state_name(job.state) == "SUCCEEDED", job.error
    assert job.counts["questions"] == 3 and job.counts["written"] == job.counts["pairs"] > 0
    pair = json.loads((data / "pairs.jsonl").read_text().splitlines()[0])
    assert set(pair) == {"id", "instruction", "input", "chosen", "rejected"}
    job = client.wait_job(client.submit_job("sampled.jsonl", "hard.jsonl", kind="hard").job_id,
                          timeout=60)
    assert state_name(job.state) == "SUCCEEDED" and job.counts["questions"] == 3
    with pytest.raises(grpc.RpcError) as err:
        client.submit_job("records.jsonl", "x.jsonl", kind="train")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "kind" in err.value.details()
