"""Job bookkeeping: state files, queueing behind the running limit, cancel, recovery."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from acecoder.errors import FailedPrecondition, InvalidArgument
from acecoder.server.synth.jobs import Job, JobManager


class GatedRunner:
    """Runs a job until its gate opens (or it is cancelled), recording the order of starts."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def __call__(self, job: Job) -> None:
        self.started.append(job.job_id)
        gate = self.gates.setdefault(job.job_id, asyncio.Event())
        await gate.wait()
        if job.options.get("fail"):
            raise RuntimeError("the LLM went away")
        job.report["kept"] = 1


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_jobs_queue_run_fail_cancel_and_save_their_state(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")

    async def main() -> None:
        runner = GatedRunner()
        jobs = JobManager(tmp_path / "state", tmp_path, runner, max_running=1)
        jobs.recover()
        a = jobs.submit("in.jsonl", "a.jsonl", {}, "a")
        b = jobs.submit("in.jsonl", "b.jsonl", {"fail": True}, "b")
        c = jobs.submit("in.jsonl", "c.jsonl", {}, "c")
        await settle()
        assert runner.started == ["a"] and (a.state, b.state, c.state) == (
            "RUNNING", "QUEUED", "QUEUED")
        jobs.cancel("c")  # cancelled while queued: never starts
        runner.gates.setdefault("a", asyncio.Event()).set()
        await settle()
        runner.gates.setdefault("b", asyncio.Event()).set()
        await settle()
        assert (a.state, b.state, c.state) == ("SUCCEEDED", "FAILED", "CANCELLED")
        assert b.error == "RuntimeError: the LLM went away"
        assert runner.started == ["a", "b"]
        saved = {p.stem: json.loads(p.read_text())["state"]
                 for p in (tmp_path / "state").glob("*.json")}
        assert saved == {"a": "SUCCEEDED", "b": "FAILED", "c": "CANCELLED"}
        assert [j.job_id for j in jobs.list()] == ["c", "b", "a"]
        await jobs.close()

    asyncio.run(main())


def test_a_new_manager_resumes_active_jobs_and_skips_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")
    state = tmp_path / "state"

    async def first() -> None:
        jobs = JobManager(state, tmp_path, GatedRunner())
        jobs.recover()
        jobs.submit("in.jsonl", "a.jsonl", {}, "a")
        await settle()
        await jobs.close()  # a shutdown, not a cancel: the job stays RUNNING on disk

    asyncio.run(first())
    assert json.loads((state / "a.json").read_text())["state"] == "RUNNING"
    (state / "junk.json").write_text("{not json")

    async def second() -> None:
        runner = GatedRunner()
        jobs = JobManager(state, tmp_path, runner)
        assert [j.job_id for j in jobs.recover()] == ["a"]
        await settle()
        assert runner.started == ["a"] and jobs.get("a").runs == 2
        runner.gates["a"].set()
        await settle()
        assert jobs.get("a").state == "SUCCEEDED"
        await jobs.close()

    asyncio.run(second())


def test_paths_are_confined_and_outputs_have_one_writer(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")
    (tmp_path.parent / "outside.jsonl").write_text("{}\n")

    async def main() -> None:
        jobs = JobManager(tmp_path / "state", tmp_path, GatedRunner())
        jobs.recover()
        with pytest.raises(InvalidArgument, match="outside"):
            jobs.submit(str(tmp_path.parent / "outside.jsonl"), "o.jsonl", {})
        with pytest.raises(InvalidArgument, match="outside"):
            jobs.submit("in.jsonl", "sub/../../o.jsonl", {})
        with pytest.raises(InvalidArgument, match="empty"):
            jobs.submit("", "o.jsonl", {})
        with pytest.raises(InvalidArgument, match="job state directory"):
            jobs.submit("in.jsonl", "state/a.json", {})
        jobs.submit("in.jsonl", "o.jsonl", {})
        with pytest.raises(FailedPrecondition, match="already writing"):
            jobs.submit("in.jsonl", "./o.jsonl", {})
        await jobs.close()

    asyncio.run(main())
    with pytest.raises(ValueError, match="max_running"):
        JobManager(tmp_path, tmp_path, GatedRunner(), max_running=0)
