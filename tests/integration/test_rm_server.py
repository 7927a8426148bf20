"""The reward-model server as users run it: a real process on loopback with the embedded
SmolLM2 AceCode-RM, reached over gRPC, the HTTP gateway, and the metrics endpoint."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from acecoder.clients import RewardClient
from acecoder.serving import spawn_server
from acecoder.v1 import reward_pb2 as pb
from acecoder.v1 import reward_pb2_grpc as pb_grpc
from tests.rm_checkpoints import same_scores

QUESTION = "Write a function add(a, b) that returns the sum of a and b."
GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


@dataclass
class RMServer:
    proc: subprocess.Popen[str]
    target: str
    http: str
    metrics: str
    first_health: int


def start_rm(*extra: str) -> RMServer:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "rm", "--port", "0", "--http-port", "0",
           "--metrics-port", "0", *extra]
    proc, m = spawn_server(cmd, r"listening on (\S+) .*http on :(\d+), metrics on :(\d+)",
                           "the RM server")
    assert proc.stdout is not None
    with grpc.insecure_channel(m.group(1)) as ch:
        first = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                     timeout=10).status
    ready = proc.stdout.readline()
    if "ready" not in ready:
        proc.kill()
        raise RuntimeError(f"server did not get ready: {ready!r}")
    return RMServer(proc, m.group(1), f"http://127.0.0.1:{m.group(2)}",
                    f"http://127.0.0.1:{m.group(3)}/metrics", first)


def stop(server: RMServer) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    return server.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def rm(server) -> Iterator[RMServer]:  # type: ignore[no-untyped-def]
    """The embedded model, with the session's executor server for reranking with tests."""
    s = start_rm("--executor", server.target)
    yield s
    assert stop(s) == 0


@pytest.fixture(scope="module")
def rm_client(rm: RMServer) -> Iterator[RewardClient]:
    with RewardClient(rm.target, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    from acecoder.models import reward as models

    return models.load("embedded:smollm2-135m")


def test_health_waits_for_the_model_and_info_says_the_head_is_trained(
        rm: RMServer, rm_client: RewardClient) -> None:
    assert rm.first_health == health_pb2.HealthCheckResponse.NOT_SERVING
    with grpc.insecure_channel(rm.target) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                      timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    info = rm_client.model_info()
    assert (info.model_id, info.format, info.backend, info.dtype) == (
        "embedded:smollm2-135m", "acecode-rm", "transformers", "float32")
    # the embedded model's shipped head, trained on MbppBase pairs (acecoder/models/heads/),
    # and its calibration, fitted on problems the head never saw
    assert info.head_trained and not info.warning
    assert info.calibrated and info.calibration_scale > 0 and "Platt" in info.calibration_method
    assert 0 < info.calibration_brier_after < info.calibration_brier_before


# Problems neither the head's training nor the calibration's fit saw (bench/rm_calibration.py)
HELD_OUT = ("Mbpp/2", "Mbpp/64", "Mbpp/66", "Mbpp/80", "Mbpp/97", "Mbpp/103")


def test_calibrated_probabilities_rank_correct_programs_first(rm_client: RewardClient) -> None:
    from acecoder.datasets import broken, load_mbpp

    problems = [p for p in load_mbpp() if p.task_id in HELD_OUT]
    assert len(problems) == len(HELD_OUT)
    got = rm_client.score([(p.question, prog) for p in problems
                           for prog in (p.program, broken(p))])
    for k, p in enumerate(problems):
        right, wrong = got[2 * k], got[2 * k + 1]
        assert right.probability > wrong.probability, p.task_id
        assert 0.5 < right.probability < 1 and 0 < wrong.probability < 0.5, p.task_id
        assert right.score < 0  # the raw score stays what the model says: uncentred
        assert right.probability == pytest.approx(
            1 / (1 + math.exp(-(0.4 * right.score + 11.27))), abs=0.02)


def test_mix_rewards_a_passing_program_above_one_half(rm: RMServer, server) -> None:  # type: ignore[no-untyped-def]
    from acecoder.clients.rewards import RewardScorer, RewardSpec, Sample

    scorer = RewardScorer(RewardSpec(kind="mix", rm=rm.target, executor=server.target))
    tests = ("assert add(1, 2) == 3", "assert add(0, 0) == 0")
    try:
        passing, failing = scorer.submit([Sample(QUESTION, GOOD, tests),
                                          Sample(QUESTION, BAD, tests)]).result(timeout=120)
    finally:
        scorer.close()
    # sigmoid(raw) of the embedded model is ~1e-10: mix was 0.5 for every passing program
    assert passing.pass_rate == 1.0 and passing.value > 0.8
    assert passing.rm_score is not None and passing.rm_score < -10  # raw, still reported
    assert failing.pass_rate == 0.5 and failing.value < passing.value


@pytest.mark.slow
def test_scores_match_the_reference_forward_under_concurrency(rm_client: RewardClient,
                                                             reference, rm: RMServer) -> None:  # type: ignore[no-untyped-def]
    from acecoder.datasets import load_mbpp

    problems = load_mbpp()[:6]
    items = [(p.question, p.program + ("\n# variant %d\n" % k) * k)
             for p in problems for k in range(4)]
    want = [reference.forward_full([reference.encode(q, r)])[0] for q, r in items]
    before = _metric(rm, "acecoder_rm_batch_items_count")
    with ThreadPoolExecutor(len(items)) as pool:
        got = list(pool.map(lambda it: rm_client.score([it])[0].score, items))
    assert got == same_scores(want)
    batches = _metric(rm, "acecoder_rm_batch_items_count") - before
    assert batches < len(items)  # concurrent requests shared forwards
    # And one request with all of them, in any order, gives the same scores.
    whole = rm_client.score(items[::-1], ids=[str(i) for i in range(len(items))][::-1])
    assert [s.score for s in whole][::-1] == same_scores(want)
    assert whole[0].id == str(len(items) - 1) and whole[0].tokens > 20


def test_score_stream_answers_every_request(rm: RMServer) -> None:
    requests = [pb.ScoreRequest(request_id=f"r{k}", items=[
        pb.ScoreItem(question=QUESTION.encode(), response=(GOOD + "#" * k).encode(), id="x")])
        for k in range(5)]
    with grpc.insecure_channel(rm.target) as ch:
        replies = list(pb_grpc.RewardModelStub(ch).ScoreStream(iter(requests), timeout=120))
    assert sorted(r.request_id for r in replies) == [f"r{k}" for k in range(5)]
    assert all(len(r.scores) == 1 and r.scores[0].id == "x" for r in replies)


@pytest.mark.parametrize(("items", "message"), [
    pytest.param([pb.ScoreItem(question=b"", response=b"x")], "items[0].question is empty",
                 id="empty-question"),
    pytest.param([pb.ScoreItem(question=b"q", response=b"ok"),
                  pb.ScoreItem(question=b"q", response=b"\xff\xfe")],
                 "items[1].response is not valid UTF-8", id="invalid-utf8"),
    pytest.param([pb.ScoreItem(question=b"q", response=b"r")] * 1025, "limit is 1024",
                 id="too-many-items"),
    pytest.param([], "items is empty", id="no-items"),
])
def test_bad_input_is_invalid_argument(rm: RMServer, items, message: str) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(rm.target) as ch, pytest.raises(grpc.RpcError) as err:
        pb_grpc.RewardModelStub(ch).Score(pb.ScoreRequest(items=items), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_rerank_by_pass_rate_then_score(rm_client: RewardClient) -> None:
    tests = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"]
    candidates = [BAD, "Sure!\n```python\n" + GOOD + "```\n", "def add(a, b): return a * b"]
    ranked = rm_client.rerank(QUESTION, candidates, tests=tests)
    assert ranked[0].index == 1 and {r.index for r in ranked[1:]} == {0, 2}
    assert [r.pass_rate for r in ranked] == pytest.approx([1.0, 1 / 3, 1 / 3])
    assert ranked[1].score >= ranked[2].score  # the tie on pass rate goes to the RM score
    plain = rm_client.rerank(QUESTION, candidates)
    assert all(r.pass_rate is None for r in plain)
    assert [r.score for r in plain] == sorted((r.score for r in plain), reverse=True)
    assert [r.rank for r in plain] == [0, 1, 2]


SLEEPER = "import time\ntime.sleep(30)\n" + GOOD  # its tests cannot finish in a budget


@pytest.fixture(scope="module")
def synth(server, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The synthesis service with its LLM on a scripted local OpenAI-protocol server."""
    from tests.fake_openai import FakeOpenAI
    from tests.integration.test_synth_server import start_synth
    from tests.integration.test_synth_server import stop as stop_synth

    fake = FakeOpenAI().start()
    data = tmp_path_factory.mktemp("synth")
    s = start_synth(fake, server.target, data / "state", data)
    yield s
    assert stop_synth(s) == 0
    fake.stop()


def test_best_of_n_with_tests_and_a_budget(rm: RMServer) -> None:
    from acecoder.clients.bestofn import BestOfN

    tests = ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    with BestOfN(rm.target) as bon:
        full = bon.rank(QUESTION, [BAD, GOOD], tests=tests)
        assert full.complete and full.best.index == 1 and full.tests_source == "given"
        assert full.best.verdicts == ("PASSED", "PASSED")
        assert dict((r.index, r.verdicts) for r in full)[0] == ("FAILED", "PASSED")
        started = time.monotonic()
        cut = bon.rank(QUESTION, [SLEEPER, BAD, GOOD], tests=tests, budget=2.0, test_timeout=1)
        took = time.monotonic() - started
    assert not cut.complete and took < 3.5, took
    by_index = {r.index: r for r in cut}
    # the sleeper's tests never came back; the others' did, and every candidate was scored
    assert by_index[0].pass_rate is None and by_index[0].verdicts == ()
    assert by_index[2].pass_rate == 1.0 and by_index[1].pass_rate == 0.5
    assert all(r.score is not None for r in cut)
    # known to pass all > not run yet > known to fail some
    assert [r.index for r in cut] == [2, 0, 1]
    with httpx.Client() as http:
        metrics = http.get(rm.metrics).text
    assert re.search(r"^acecoder_rm_rerank_budget_expired_total [1-9]", metrics, re.M)


def test_best_of_n_imagines_tests_when_none_are_given(rm: RMServer, synth) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from acecoder.clients.bestofn import AsyncBestOfN, BestOfN

    with BestOfN(rm.target, synth=synth.target) as bon:
        got = bon.rank(QUESTION, [BAD, GOOD], synthesize=True, budget=60)
        assert got.tests_source == "synthesized" and got.complete and got.best.index == 1
        assert got.tests and all(t.startswith("assert add(") for t in got.tests)
        assert got.best.pass_rate == 1.0 and got.ranked[1].pass_rate < 1.0
        # synthesis that cannot finish within its share: ranked by RM alone, and told why
        slow = bon.rank("Add. SCRIPT:slow", [BAD, GOOD], synthesize=True, budget=1.5)
        assert slow.tests_source == "none" and "DEADLINE_EXCEEDED" in slow.note
        assert slow.complete and all(r.pass_rate is None for r in slow)
        with pytest.raises(ValueError, match="budget must be > 0"):
            bon.rank(QUESTION, [GOOD], budget=-1)
    with BestOfN(rm.target) as bare, pytest.raises(ValueError, match="synthesis service"):
        bare.rank(QUESTION, [GOOD], synthesize=True)

    async def main():  # type: ignore[no-untyped-def]
        async with AsyncBestOfN(rm.target, synth=synth.target) as bon:
            return await asyncio.gather(*(bon.rank(QUESTION, [BAD, GOOD], synthesize=True)
                                          for _ in range(3)))

    assert [r.best.index for r in asyncio.run(main())] == [1, 1, 1]


@pytest.mark.slow
def test_the_rerank_command_with_a_budget_and_synthesis(tmp_path, rm: RMServer, synth) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "in.jsonl"
    rows = [{"id": "given", "question": QUESTION, "candidates": [BAD, GOOD],
             "tests": ["assert add(2, 2) == 4"]},
            {"id": "imagined", "question": QUESTION, "candidates": [GOOD, BAD]},
            {"id": "cut", "question": QUESTION, "candidates": [SLEEPER, GOOD],
             "tests": ["assert add(2, 2) == 4", "assert add(0, 1) == 1"]}]  # 2 x 3 s timeouts
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-m", "acecoder.cli", "rerank", "--input", str(src),
                           "--output", str(out), "--server", rm.target, "--synth", synth.target,
                           "--budget", "4", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "3 questions ranked (1 cut short by the budget)" in done.stderr
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert got["given"]["best"] == 1 and got["given"]["tests_source"] == "given"
    assert got["given"]["ranked"][0]["verdicts"] == ["PASSED"]
    assert got["imagined"]["tests_source"] == "synthesized" and got["imagined"]["best"] == 0
    assert got["cut"]["complete"] is False and got["cut"]["best"] == 1
    assert got["cut"]["ranked"][1]["pass_rate"] is None
    assert all(r["complete"] for k, r in got.items() if k != "cut")
    bad = subprocess.run([sys.executable, "-m", "acecoder.cli", "rerank", "--input", str(src),
                          "--output", str(tmp_path / "x.jsonl"), "--server", rm.target,
                          "--budget", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--budget must be > 0" in bad.stderr


def test_the_openrlhf_gateway(rm: RMServer, rm_client: RewardClient, reference) -> None:  # type: ignore[no-untyped-def]
    chatml = reference.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True)
    llama3 = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + QUESTION +
              "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    body = {"query": [chatml + GOOD + "<|im_end|>\n<|endoftext|><|endoftext|>",
                      llama3 + BAD + "<|eot_id|>"],
            "prompts": [chatml, llama3], "labels": ["", ""]}
    reply = httpx.post(rm.http + "/get_reward", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    want = [s.score for s in rm_client.score([(QUESTION, GOOD), (QUESTION, BAD)])]
    assert data["rewards"] == pytest.approx(want, abs=1e-4)
    # scores are calibrated probabilities (OpenRLHF filters on them), not sigmoid(raw) ~ 1e-10
    probabilities = [s.probability for s in rm_client.score([(QUESTION, GOOD), (QUESTION, BAD)])]
    assert data["scores"] == pytest.approx(probabilities, abs=1e-4)
    assert all(0.01 < s < 1 for s in data["scores"])
    assert data["extra_logs"]["rm_score"] == data["rewards"]
    bad = httpx.post(rm.http + "/get_reward", json={"query": ["no template here"]}, timeout=30)
    assert bad.status_code == 400 and "chat formats" in bad.json()["error"]
    assert httpx.post(rm.http + "/get_reward", content=b"{", timeout=30).status_code == 400
    assert httpx.get(rm.http + "/health", timeout=10).json() == {"status": "SERVING"}


def _metric(rm: RMServer, name: str, labels: str = "") -> float:
    text = httpx.get(rm.metrics, timeout=10).text
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_gateway_caller_that_hangs_up_stops_its_work(rm: RMServer) -> None:
    """A caller that disconnects mid-request: the gateway cancels the work, and the RM
    service drops the request's items that had not been scored yet."""
    import socket

    def cancelled() -> float:
        text = httpx.get(rm.metrics, timeout=30).text
        m = re.search(r'^acecoder_rm_rejected_items_total\{reason="cancelled"\} (\S+)', text,
                      re.M)
        return float(m.group(1)) if m else 0.0

    before = cancelled()
    query = ("<|im_start|>user\n" + QUESTION + "<|im_end|>\n<|im_start|>assistant\n"
             + GOOD * 60 + "<|im_end|>")
    body = json.dumps({"query": [query] * 64}).encode()
    port = int(rm.http.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(1.0)  # the items are queued and the first batches run
    deadline = time.monotonic() + 30
    while cancelled() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cancelled() - before >= 32, "the hung-up request's items kept running"


def test_metrics(rm: RMServer, rm_client: RewardClient) -> None:
    rm_client.score([(QUESTION, GOOD)])
    text = httpx.get(rm.metrics, timeout=10).text
    for name in ("acecoder_rm_requests_total", "acecoder_rm_rpc_latency_seconds_bucket",
                 "acecoder_rm_items_total", "acecoder_rm_batch_items_bucket",
                 "acecoder_rm_batch_padding_ratio_bucket", "acecoder_rm_queue_depth",
                 "acecoder_rm_tokens_total", "acecoder_rm_batch_tokens_per_second",
                 "acecoder_rm_prefix_cache_total", "acecoder_rm_queue_wait_seconds_bucket"):
        assert name in text, name
    assert 'head_trained="true"' in text
    assert _metric(rm, "acecoder_rm_requests_total", '{code="OK",method="Score"}') >= 1
    # the per-stage profile (bench/rm_bench.py prints it): every stage of a scored item
    before = {s: _metric(rm, "acecoder_rm_stage_seconds_total", f'{{stage="{s}"}}')
              for s in ("tokenize", "queue_wait", "prefix_lookup", "forward", "head")}
    rm_client.score([(QUESTION, GOOD + f"\n# {time.monotonic()}")])  # not cached whole
    for stage, seconds in before.items():
        after = _metric(rm, "acecoder_rm_stage_seconds_total", f'{{stage="{stage}"}}')
        assert after > seconds, stage


@pytest.mark.slow
def test_queue_limit_deadline_and_drain(tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, _ = tiny_acecode_rm
    s = start_rm("--model", str(path), "--max-queue", "4", "--grace", "30")
    try:
        with RewardClient(s.target, timeout=60) as c:
            with pytest.raises(grpc.RpcError) as err:
                c.score([(QUESTION, GOOD)] * 5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(grpc.RpcError) as err:
                c.score([(QUESTION, GOOD)], deadline=0.0001)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # A request admitted before SIGTERM still gets its answer; the process exits 0.
            answers: list[object] = []
            big = [(QUESTION * 40, GOOD * 20 + str(k)) for k in range(4)]
            t = threading.Thread(target=lambda: answers.append(c.score(big)))
            t.start()
            time.sleep(0.2)
            s.proc.send_signal(signal.SIGTERM)
            t.join(60)
            assert answers and len(answers[0]) == 4  # type: ignore[arg-type]
    finally:
        assert stop(s) == 0


@pytest.mark.slow
def test_score_rerank_and_convert_commands(tmp_path, rm: RMServer, tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, reference = tiny_acecode_rm
    src = tmp_path / "in.jsonl"
    rows = [{"id": f"p{k}", "question": QUESTION, "response": GOOD + "#" * k} for k in range(3)]
    rows.append({"id": "empty", "question": "", "response": GOOD})
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    cli = [sys.executable, "-m", "acecoder.cli"]
    done = subprocess.run([*cli, "score", "--input", str(src), "--output", str(out),
                           "--model", str(path), "--quiet"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    from transformers import AutoTokenizer

    from tests.rm_checkpoints import chat_ids

    tok = AutoTokenizer.from_pretrained(str(path))
    for r in rows[:3]:
        want = reference.reward(chat_ids(tok, r["question"], r["response"]))
        assert got[r["id"]]["score"] == pytest.approx(want, abs=1e-4)
        assert set(got[r["id"]]) == {"id", "score"}
    assert got["empty"]["score"] is None and "empty" in got["empty"]["error"]
    again = subprocess.run([*cli, "score", "--input", str(src), "--output", str(out), "--server",
                            rm.target, "--quiet"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 items scored, 4 already" in again.stderr

    cands = tmp_path / "cands.jsonl"
    cands.write_text(json.dumps({"id": "q1", "question": QUESTION, "candidates": [BAD, GOOD],
                                 "tests": ["assert add(2, 2) == 4"]}) + "\n")
    ranked_out = tmp_path / "ranked.jsonl"
    done = subprocess.run([*cli, "rerank", "--input", str(cands), "--output", str(ranked_out),
                           "--server", rm.target, "--quiet"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    row = json.loads(ranked_out.read_text())
    assert row["best"] == 1 and row["ranked"][0]["pass_rate"] == 1.0

    converted = tmp_path / "seqcls"
    done = subprocess.run([*cli, "rm", "convert", "--model", str(path), "--output",
                           str(converted)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((converted / "config.json").read_text())["num_labels"] == 1
    bad = subprocess.run([*cli, "rm", "convert", "--model", str(converted), "--output",
                          str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "not an AceCode-RM checkpoint" in bad.stderr


def test_rm_calibrate_writes_a_file_the_server_then_uses(tmp_path, tiny_acecode_rm) -> None:  # type: ignore[no-untyped-def]
    path, _ = tiny_acecode_rm
    ckpt = tmp_path / "ckpt"  # a copy: the session's tiny model stays uncalibrated
    shutil.copytree(path, ckpt)
    s = start_rm("--model", str(ckpt))
    try:
        with RewardClient(s.target, timeout=60) as c:
            info = c.model_info()
            assert not info.calibrated and "no calibration" in info.warning
            raw = c.score([(QUESTION, GOOD)])[0]
            assert raw.probability == pytest.approx(1 / (1 + math.exp(-raw.score)))
    finally:
        assert stop(s) == 0
    rows = [{"question": f"{QUESTION} ({k})", "program": GOOD + "#" * k, "pass_rate": 1.0}
            for k in range(6)] + [{"question": f"{QUESTION} ({k})", "response": BAD + "#" * k,
                                   "pass_rate": 0.5} for k in range(6)]
    rows.append({"instruction": QUESTION, "chosen": GOOD, "rejected": BAD})
    src = tmp_path / "labelled.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli = [sys.executable, "-m", "acecoder.cli", "rm", "calibrate"]
    done = subprocess.run([*cli, "--model", str(ckpt), "--input", str(src), "--output",
                           str(ckpt / "calibration.json")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    written = json.loads((ckpt / "calibration.json").read_text())
    assert written["n"] > 0 and "Brier" in done.stderr
    s = start_rm("--model", str(ckpt))
    try:
        with RewardClient(s.target, timeout=60) as c:
            info = c.model_info()
            assert info.calibrated and not info.warning
            assert (info.calibration_scale, info.calibration_shift) == pytest.approx(
                (written["scale"], written["shift"]))
            got = c.score([(QUESTION, GOOD)])[0]
            assert got.probability == pytest.approx(1 / (1 + math.exp(
                -(written["scale"] * got.score + written["shift"]))), abs=1e-6)
    finally:
        assert stop(s) == 0
    bad = subprocess.run([*cli, "--model", str(ckpt), "--input", str(tmp_path / "none.jsonl"),
                          "--output", str(tmp_path / "c.json")], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "cannot read" in bad.stderr


def test_async_client(rm: RMServer, rm_client: RewardClient) -> None:
    import asyncio

    from acecoder.clients import AsyncRewardClient

    async def main() -> tuple[list[float], list[int], bool]:
        async with AsyncRewardClient(rm.target, timeout=120) as c:
            scores = await asyncio.gather(*(c.score([(QUESTION, r)]) for r in (GOOD, BAD)))
            ranked = await c.rerank(QUESTION, [BAD, GOOD], tests=["assert add(2, 3) == 5"])
            info = await c.model_info()
        return [s[0].score for s in scores], [r.index for r in ranked], info.head_trained

    scores, order, trained = asyncio.run(main())
    want = [s.score for s in rm_client.score([(QUESTION, GOOD), (QUESTION, BAD)])]
    assert scores == pytest.approx(want, abs=1e-4)
    assert order == [1, 0] and trained is True
