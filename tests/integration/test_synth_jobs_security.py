"""A synthesis server's jobs against a hostile client and a hostile data directory: links
planted before or swapped in after submission are never followed (each open walks from the
data directory with no link followed), a cancelled job writes nothing once CancelJob has
answered, and bad requests are refused with the field they got wrong."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from acecoder.clients import SynthesisClient
from acecoder.clients.synthesis import state_name
from tests.integration.test_synth_server import SynthServer, ids_in, write_seeds
from tests.integration.test_synth_server import data, fake, synth  # noqa: F401 (fixtures)

PRECIOUS = '{"id": "precious", "note": "outside the data directory"}\n'
"""What a file outside the data directory holds: JSONL, so only the links stop a job."""


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outside")


@pytest.fixture(scope="module")
def client(synth: SynthServer) -> Iterator[SynthesisClient]:
    with SynthesisClient(synth.target, timeout=60) as c:
        yield c


def victim(outside: Path, name: str) -> Path:
    v = outside / f"victim-{name}.txt"
    v.write_text(PRECIOUS)
    return v


def sampled(ids: list[str], completion: str = "x", per_rate: int = 2) -> list[dict[str, Any]]:
    """AceCode-87K records with inferences that make pairs (pass rates 1.0 and 0.5)."""
    return [{"id": i, "question": f"Question {i}", "test_cases": ["assert True"],
             "inferences": [{"model_name": "m", "completion": f"{completion} {j}",
                             "pass_rate": 1.0 if j < per_rate else 0.5}
                            for j in range(2 * per_rate)]} for i in ids]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def blocker(client: SynthesisClient, data: Path) -> Iterator[str]:
    """A slow synth job that holds the server's one job slot, so later jobs wait QUEUED."""
    write_seeds(data / "blocker.jsonl", 40, script="slow", prefix="blk")
    job_id = f"blocker-{time.monotonic_ns()}"
    client.submit_job("blocker.jsonl", f"{job_id}.jsonl", job_id=job_id)
    deadline = time.monotonic() + 30
    while state_name(client.get_job(job_id).state) != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield job_id
    client.cancel_job(job_id)


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


# -- item 1: links, planted before the job or swapped in after submission


@pytest.mark.parametrize("kind, output, planted", [
    pytest.param("pairs", "p-out.jsonl", "p-out.jsonl", id="output"),
    pytest.param("synth", "p-syn.jsonl", "p-syn.jsonl.dropped.jsonl", id="dropped"),
    pytest.param("pairs", "p-pq.parquet", "p-pq.parquet.partial.jsonl", id="parquet-partial"),
    pytest.param("pairs", "p-tmp.parquet", "p-tmp.parquet.tmp", id="parquet-tmp"),
    pytest.param("pairs", "p-dir/out.jsonl", "p-dir", id="parent-directory"),
])
def test_a_link_planted_before_submission_is_refused(client: SynthesisClient, data: Path,
                                                     outside: Path, kind: str, output: str,
                                                     planted: str) -> None:
    inp = "p-seeds.jsonl" if kind == "synth" else "p-records.jsonl"
    write_seeds(data / "p-seeds.jsonl", 2)
    write_jsonl(data / "p-records.jsonl", sampled(["a", "b"]))
    v = victim(outside, planted.replace("/", "_"))
    (data / planted).symlink_to(v.parent if planted == "p-dir" else v)
    before = sorted(p.name for p in outside.iterdir())
    err = refused(lambda: client.submit_job(inp, output, kind=kind))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output_path" in err.details() and f"{planted} is a symbolic link" in err.details()
    assert v.read_text() == PRECIOUS and sorted(p.name for p in outside.iterdir()) == before


def test_a_linked_input_is_refused(client: SynthesisClient, data: Path, outside: Path) -> None:
    write_jsonl(outside / "secret.jsonl", sampled(["secret"]))
    (data / "linked-in.jsonl").symlink_to(outside / "secret.jsonl")
    err = refused(lambda: client.submit_job("linked-in.jsonl", "li.jsonl", kind="pairs"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input_path" in err.details() and "symbolic link" in err.details()


def test_links_swapped_in_after_submission_are_not_followed(
        client: SynthesisClient, data: Path, outside: Path, blocker: str) -> None:
    write_seeds(data / "s-seeds.jsonl", 2)
    write_jsonl(data / "s-records.jsonl", sampled(["a", "b", "c"]))
    write_jsonl(data / "s-in.jsonl", sampled(["a"]))
    write_jsonl(outside / "s-secret.jsonl", sampled(["secret"]))
    (outside / "s-dir").mkdir()
    # (job id, kind, input, output, what is swapped for a link after submission)
    cases = [("s-out", "pairs", "s-records.jsonl", "s-out.jsonl", "s-out.jsonl"),
             ("s-dropped", "synth", "s-seeds.jsonl", "s-syn.jsonl", "s-syn.jsonl.dropped.jsonl"),
             ("s-partial", "pairs", "s-records.jsonl", "s-pq.parquet",
              "s-pq.parquet.partial.jsonl"),
             ("s-tmp", "pairs", "s-records.jsonl", "s-tmp.parquet", "s-tmp.parquet.tmp"),
             ("s-dir", "pairs", "s-records.jsonl", "s-dir/out.jsonl", "s-dir"),
             ("s-in", "pairs", "s-in.jsonl", "s-in.out.jsonl", "s-in.jsonl")]
    for job_id, kind, inp, out, _ in cases:
        job = client.submit_job(inp, out, kind=kind, job_id=job_id)
        assert state_name(job.state) == "QUEUED"  # behind the blocker: nothing opened yet
    victims = {}
    for job_id, _, _, _, swapped in cases:
        (data / swapped).unlink(missing_ok=True)
        if swapped == "s-dir":
            (data / swapped).symlink_to(outside / "s-dir", target_is_directory=True)
        elif swapped == "s-in.jsonl":
            (data / swapped).symlink_to(outside / "s-secret.jsonl")
        else:
            victims[job_id] = victim(outside, job_id)
            (data / swapped).symlink_to(victims[job_id])
    client.cancel_job(blocker)
    for job_id, _, _, _, swapped in cases:
        job = client.wait_job(job_id, timeout=60)
        assert state_name(job.state) == "FAILED", (job_id, job.error)
        assert "UnsafeFile" in job.error and f"{swapped} is a symbolic link" in job.error
    assert all(v.read_text() == PRECIOUS for v in victims.values())
    assert list((outside / "s-dir").iterdir()) == []
    assert not (data / "s-in.out.jsonl").exists()  # the secret was never read into it


def test_a_parquet_output_swapped_for_a_link_is_replaced_not_written_through(
        client: SynthesisClient, data: Path, outside: Path, blocker: str) -> None:
    import pyarrow.parquet as pq

    write_jsonl(data / "f-records.jsonl", sampled(["a", "b"]))
    client.submit_job("f-records.jsonl", "f-out.parquet", kind="pairs", job_id="f-out")
    v = victim(outside, "f-out")
    (data / "f-out.parquet").symlink_to(v)
    client.cancel_job(blocker)
    job = client.wait_job("f-out", timeout=60)
    assert state_name(job.state) == "SUCCEEDED", job.error
    assert v.read_text() == PRECIOUS
    assert not (data / "f-out.parquet").is_symlink()
    assert pq.read_table(data / "f-out.parquet").num_rows == job.counts["pairs"] > 0


# -- item 2: cancel stops the work before it answers; a resubmit writes each id once


def _cancel_mid_run(client: SynthesisClient, out: Path, job_id: str) -> int:
    deadline = time.monotonic() + 60
    while not out.exists() or out.stat().st_size == 0:
        assert time.monotonic() < deadline, "the job wrote nothing"
        time.sleep(0.01)
    job = client.cancel_job(job_id)
    assert state_name(job.state) == "CANCELLED"
    size = out.stat().st_size
    time.sleep(1.0)
    assert out.stat().st_size == size  # nothing written once CancelJob answered
    assert out.read_bytes().endswith(b"\n")  # whole records only
    return size


@pytest.mark.slow
def test_a_cancelled_pairs_job_stops_writing_and_resumes_exactly_once(
        client: SynthesisClient, data: Path) -> None:
    # slow records (600 samples that make no pair: 360k comparisons each) between records
    # whose 16 pairs each are written as they come
    rows = []
    for k in range(100):
        rows.append({"id": f"h{k}", "question": "q", "inferences": [
            {"model_name": "m", "completion": f"c{j}", "pass_rate": 1.0} for j in range(600)]})
        rows += sampled([f"l{k}"], completion="x" * 1000, per_rate=4)
    write_jsonl(data / "big.jsonl", rows)
    out = data / "big-pairs.jsonl"
    client.submit_job("big.jsonl", "big-pairs.jsonl", kind="pairs", job_id="big-pairs")
    size = _cancel_mid_run(client, out, "big-pairs")
    assert 0 < size
    first = len(ids_in(out))
    assert 0 < first < 1600
    job = client.wait_job(client.submit_job("big.jsonl", "big-pairs.jsonl", kind="pairs",
                                            job_id="big-pairs").job_id, timeout=120)
    assert state_name(job.state) == "SUCCEEDED" and job.runs == 2, job.error
    written = Counter(ids_in(out))
    assert set(written) == {f"l{k}/{j}" for k in range(100) for j in range(16)}
    assert set(written.values()) == {1}
    assert job.counts["written"] == 1600 - first


@pytest.mark.slow
def test_a_cancelled_sample_job_stops_writing_and_resumes_exactly_once(
        client: SynthesisClient, data: Path) -> None:
    ids = [f"w{k}" for k in range(24)]
    write_jsonl(data / "to-sample.jsonl", [
        {"id": i, "source": "t", "question": f"Write add ({i}). SCRIPT:wait",
         "test_cases": ["assert add(1, 2) == 3"], "inferences": []} for i in ids])
    out = data / "sampled-w.jsonl"
    client.submit_job("to-sample.jsonl", "sampled-w.jsonl", kind="sample", k=2,
                      job_id="samp")
    _cancel_mid_run(client, out, "samp")
    assert 0 < len(ids_in(out)) < 24
    job = client.wait_job(client.submit_job("to-sample.jsonl", "sampled-w.jsonl",
                                            kind="sample", k=2, job_id="samp").job_id,
                          timeout=120)
    assert state_name(job.state) == "SUCCEEDED" and job.runs == 2, job.error
    assert sorted(ids_in(out)) == sorted(ids)  # each id exactly once


# -- item 3: requests that would make two writers, or write over what is not the job's


def test_jobs_that_would_write_over_something_are_refused(
        client: SynthesisClient, data: Path, blocker: str) -> None:
    write_jsonl(data / "r-records.jsonl", sampled(["a", "b"]))
    # a cancelled job may not come back while another active job writes its output
    client.submit_job("r-records.jsonl", "r-shared.jsonl", kind="pairs", job_id="r1")
    assert state_name(client.cancel_job("r1").state) == "CANCELLED"
    client.submit_job("r-records.jsonl", "r-shared.jsonl", kind="hard", job_id="r2")
    err = refused(lambda: client.submit_job("r-records.jsonl", "r-shared.jsonl", kind="pairs",
                                            job_id="r1"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "job r2 is already writing" in err.details()
    client.cancel_job("r2")
    # a known id with another spec is not the same job
    for change in ({"input_path": "r-other.jsonl"}, {"output_path": "r-other.jsonl"},
                   {"kind": "hard"}):
        write_jsonl(data / "r-other.jsonl", sampled(["c"]))
        spec = {"input_path": "r-records.jsonl", "output_path": "r-shared.jsonl",
                "kind": "pairs", **change}
        err = refused(lambda: client.submit_job(job_id="r1", **spec))  # type: ignore[arg-type]
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"job r1 exists with another {next(iter(change))}" in err.details()
    # the output is the input: records would be appended to it
    err = refused(lambda: client.submit_job("r-records.jsonl", "./r-records.jsonl",
                                            kind="pairs"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "would write over input_path" in err.details()
    # an existing output that is not JSONL is not cut to nothing
    (data / "r-notes.md").write_text("# my notes\n\nnot records\n")
    err = refused(lambda: client.submit_job("r-records.jsonl", "r-notes.md", kind="pairs"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "r-notes.md:1 is not a JSON object" in err.details()
    assert (data / "r-notes.md").read_text() == "# my notes\n\nnot records\n"
    # a job id is matched whole: a trailing newline is not let through
    err = refused(lambda: client.submit_job("r-records.jsonl", "r-nl.jsonl", kind="pairs",
                                            job_id="r3\n"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "job_id" in err.details()


# -- item 4: NUL bytes and over-long strings, named


def test_nul_bytes_and_long_strings_are_invalid_argument_naming_the_field(
        client: SynthesisClient) -> None:
    long_name = "n" * 300
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: client.submit_job("in\0.jsonl", "o.jsonl"), "input_path contains a NUL"),
        (lambda: client.submit_job("in.jsonl", "o\0.jsonl"), "output_path contains a NUL"),
        (lambda: client.submit_job("in.jsonl", "o.jsonl", job_id="j\0"), "job_id contains"),
        (lambda: client.submit_job("in.jsonl", "o.jsonl", stages=["filter\0"]), "stage"),
        (lambda: client.submit_job("in.jsonl", "d/" * 2100 + "o.jsonl"),
         "output_path is over 4096 bytes"),
        (lambda: client.submit_job(long_name, "o.jsonl"), "input_path: the name"),
        (lambda: client.get_job("j\0"), "job_id contains a NUL"),
        (lambda: client.cancel_job("j\0"), "job_id contains a NUL"),
        (lambda: list(client.synthesize("s\0", question="q")), "seed.id contains a NUL"),
        (lambda: list(client.synthesize("s", question="q\0")), "seed.question contains"),
        (lambda: list(client.synthesize("s", program="p\0")), "seed.program contains"),
        (lambda: list(client.synthesize("s", question="q", source="x\0")),
         "seed.source contains"),
        (lambda: list(client.synthesize("s", question="q", tests=["assert 1", "t\0"])),
         "seed.tests[1] contains"),
        (lambda: list(client.synthesize("s", question="q", request_id="r\0")),
         "request_id contains"),
        (lambda: list(client.synthesize("s" * 2000, question="q")), "seed.id is over"),
    ]
    for call, message in cases:
        err = refused(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (message, err.details())
        assert message in err.details(), (message, err.details())


def test_health_watch_on_the_synthesis_server(synth: SynthServer) -> None:
    from grpc_health.v1 import health_pb2

    from tests.integration.test_security import watch

    assert watch(synth.target, "acecoder.v1.Synthesis") == health_pb2.HealthCheckResponse.SERVING
