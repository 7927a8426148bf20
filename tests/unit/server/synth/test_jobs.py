"""Job bookkeeping: state files, queueing behind the running limit, cancel, recovery."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from acecoder.errors import FailedPrecondition, InvalidArgument
from acecoder.server.synth.jobs import Job, JobManager
from acecoder.server.synth.safefs import UnsafeFile


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
    """Let the jobs move on (a job checks its outputs in a thread before it runs)."""
    for _ in range(20):
        await asyncio.sleep(0.01)


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
        await jobs.cancel("c")  # cancelled while queued: never starts
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
    spec = json.loads((state / "a.json").read_text())
    (state / "other.json").write_text(json.dumps(spec))  # a's spec under another name
    (state / "dots.json").write_text(json.dumps({**spec, "job_id": "../dots"}))

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


def test_ids_paths_and_names_are_checked_as_whole_strings(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")

    async def main() -> None:
        jobs = JobManager(tmp_path / "state", tmp_path, GatedRunner())
        jobs.recover()
        cases = [
            (("in.jsonl", "o.jsonl", {}, "job\n"), "job_id 'job\\n' must be"),
            (("in.jsonl", "o.jsonl", {}, "a\0b"), "job_id contains a NUL byte"),
            (("in.jsonl", "o.jsonl", {}, "a" * 129), "job_id"),
            (("in\0.jsonl", "o.jsonl", {}), "input_path contains a NUL byte"),
            (("in.jsonl", "o.jsonl\0.x", {}), "output_path contains a NUL byte"),
            (("in.jsonl", "d/" * 2100 + "o.jsonl", {}), "output_path is over 4096 bytes"),
            (("in.jsonl", "x" * 256, {}), "is 256 bytes, over the 255"),
            # the name fits, the dropped seeds' file beside it would not
            (("in.jsonl", "x" * 250, {}), "xxx.dropped.jsonl' is 264 bytes, over the 255"),
            (("in.jsonl", ".", {}), "outside the server's data directory"),
        ]
        for args, message in cases:
            with pytest.raises(InvalidArgument) as err:
                jobs.submit(*args)  # type: ignore[arg-type]
            assert message in str(err.value), (args, str(err.value))
        for call in (jobs.get, jobs.cancel):
            with pytest.raises(InvalidArgument, match="job_id contains a NUL byte"):
                result = call("a\0")
                if asyncio.iscoroutine(result):
                    await result
        assert jobs.jobs == {}
        await jobs.close()

    asyncio.run(main())


def test_an_output_that_is_the_input_or_not_jsonl_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "a", "question": "q"}\n')
    (tmp_path / "o.parquet.partial.jsonl").write_text('{"id": "a"}\n')
    (tmp_path / "o.jsonl.dropped.jsonl").write_text('{"id": "a", "reason": "x"}\n')
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n{\"id\": \"x\"}\n")
    (tmp_path / "mixed.jsonl").write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')

    async def main() -> None:
        jobs = JobManager(tmp_path / "state", tmp_path, GatedRunner())
        jobs.recover()
        for inp, out, kind in [("in.jsonl", "in.jsonl", "pairs"),
                               ("in.jsonl", "./sub/../in.jsonl", "synth"),
                               ("o.parquet.partial.jsonl", "o.parquet", "hard"),
                               ("o.jsonl.dropped.jsonl", "o.jsonl", "synth")]:
            with pytest.raises(InvalidArgument, match="would write over input_path"):
                jobs.submit(inp, out, {}, kind=kind)
        with pytest.raises(FailedPrecondition, match=r"notes.txt:1 is not a JSON object"):
            jobs.submit("in.jsonl", "notes.txt", {}, kind="pairs")
        with pytest.raises(FailedPrecondition, match=r"\.dropped\.jsonl:1 is not a JSON object"):
            (tmp_path / "s.jsonl.dropped.jsonl").write_text("\n")
            jobs.submit("in.jsonl", "s.jsonl", {})
        assert notes.read_text() == "my notes\n{\"id\": \"x\"}\n"
        # a first line that reads is let in at submit; the whole file is read before it runs
        job = jobs.submit("in.jsonl", "mixed.jsonl", {}, "mixed", kind="pairs")
        await settle()
        assert job.state == "FAILED" and "mixed.jsonl:2 is not a JSON object" in job.error
        assert (tmp_path / "mixed.jsonl").read_text() == '{"id": "a"}\nnot json\n{"id": "b"}\n'
        # a last line cut short by a crash is the job's own: it resumes (and drops it)
        (tmp_path / "cut.jsonl").write_text('{"id": "a"}\n{"id": "b", "ques')
        runner = jobs.runner
        assert isinstance(runner, GatedRunner)
        jobs.submit("in.jsonl", "cut.jsonl", {}, "cut", kind="pairs")
        await settle()
        assert jobs.get("cut").state == "RUNNING" and runner.started == ["cut"]
        await jobs.close()

    asyncio.run(main())


def test_an_output_that_stops_being_jsonl_before_the_job_runs_fails_it(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")

    async def main() -> None:
        runner = GatedRunner()
        jobs = JobManager(tmp_path / "state", tmp_path, runner)
        jobs.recover()
        jobs.submit("in.jsonl", "first.jsonl", {}, "first")
        job = jobs.submit("in.jsonl", "late.jsonl", {}, "late")  # queued behind the first
        (tmp_path / "late.jsonl").write_text("a file someone else wrote since\n")
        runner.gates.setdefault("first", asyncio.Event()).set()
        await settle()
        assert job.state == "FAILED" and "late.jsonl:1 is not a JSON object" in job.error
        assert runner.started == ["first"]
        assert (tmp_path / "late.jsonl").read_text() == "a file someone else wrote since\n"
        await jobs.close()

    asyncio.run(main())


def test_resubmitting_checks_the_spec_and_the_one_writer_rule(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")
    (tmp_path / "in2.jsonl").write_text("{}\n")

    async def main() -> None:
        jobs = JobManager(tmp_path / "state", tmp_path, GatedRunner(), max_running=2)
        jobs.recover()
        jobs.submit("in.jsonl", "o.jsonl", {"n_tests": 5}, "a")
        await settle()
        await jobs.cancel("a")
        for args, differ in [(("in2.jsonl", "o.jsonl", {"n_tests": 5}), "input_path"),
                             (("in.jsonl", "p.jsonl", {"n_tests": 5}), "output_path"),
                             (("in.jsonl", "o.jsonl", {"n_tests": 6}), "options"),
                             (("in.jsonl", "o.jsonl", {}), "options")]:
            with pytest.raises(FailedPrecondition, match=f"job a exists with another {differ}"):
                jobs.submit(*args, "a")  # type: ignore[arg-type]
        with pytest.raises(FailedPrecondition, match="another kind"):
            jobs.submit("in.jsonl", "o.jsonl", {"n_tests": 5}, "a", kind="pairs")
        # while a cancelled job is down, another writes its output: resubmitting it is refused
        jobs.submit("in2.jsonl", "o.jsonl", {}, "b")
        with pytest.raises(FailedPrecondition, match="job b is already writing"):
            jobs.submit("in.jsonl", "o.jsonl", {"n_tests": 5}, "a")
        assert jobs.get("a").state == "CANCELLED"
        # side files count: a synth job's dropped seeds are another job's output
        with pytest.raises(FailedPrecondition, match="job b is already writing .*dropped"):
            jobs.submit("in.jsonl", "o.jsonl.dropped.jsonl", {}, kind="pairs")
        await jobs.cancel("b")
        again = jobs.submit("./in.jsonl", "o.jsonl", {"n_tests": 5}, "a")
        assert again.state == "QUEUED" and again.runs == 1
        await jobs.close()

    asyncio.run(main())


def test_cancel_returns_once_a_threads_work_has_stopped(tmp_path: Path) -> None:
    from acecoder.server.synth.jobs import in_thread
    from acecoder.server.synth.offline import Stopped

    (tmp_path / "in.jsonl").write_text("{}\n")
    out = tmp_path / "o.jsonl"

    def write(stopped) -> None:  # type: ignore[no-untyped-def]
        with out.open("a") as f:
            for k in range(100_000):
                if stopped():
                    raise Stopped("asked to")
                f.write(f"{k}\n")
                f.flush()
                time.sleep(0.001)

    async def runner(job: Job) -> None:
        await in_thread(write)

    async def main() -> None:
        jobs = JobManager(tmp_path / "state", tmp_path, runner)
        jobs.recover()
        jobs.submit("in.jsonl", "x.jsonl", {}, "t")
        while not out.exists() or out.stat().st_size < 20:
            await asyncio.sleep(0.01)
        job = await jobs.cancel("t")
        assert job.state == "CANCELLED"
        size = out.stat().st_size
        await asyncio.sleep(0.3)
        assert out.stat().st_size == size  # the thread had stopped when cancel returned
        assert json.loads((tmp_path / "state" / "t.json").read_text())["state"] == "CANCELLED"
        # a shutdown stops the thread as well, and leaves the job RUNNING to resume
        out.unlink()
        jobs.submit("in.jsonl", "x.jsonl", {}, "t")
        while not out.exists() or out.stat().st_size < 20:
            await asyncio.sleep(0.01)
        await jobs.close()
        size = out.stat().st_size
        await asyncio.sleep(0.3)
        assert out.stat().st_size == size and jobs.get("t").state == "RUNNING"

    asyncio.run(main())


def test_a_link_in_the_state_directory_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "j.json.tmp").symlink_to(victim)

    async def main() -> None:
        jobs = JobManager(tmp_path / "state", tmp_path, GatedRunner())
        jobs.recover()
        with pytest.raises(UnsafeFile, match="j.json.tmp is a symbolic link"):
            jobs.submit("in.jsonl", "o.jsonl", {}, "j")
        assert jobs.jobs == {} and victim.read_text() == "precious\n"
        await jobs.close()

    asyncio.run(main())


@pytest.mark.parametrize("content, ok", [
    pytest.param(b"", True, id="empty"),
    pytest.param(b'{"id": "a"}\n{"id": "b"}\n', True, id="records"),
    pytest.param(b'{"id": "a"}\n{"id": "b", "q', True, id="cut-short-last-line"),
    pytest.param(b'{"id": "a"}\n\n{"id": "b"}\n', False, id="blank-line"),
    pytest.param(b'{"id": "a"}\n{"no_id": 1}\n', False, id="no-id"),
    pytest.param(b'{"id": "a"}\n[1, 2]\n', False, id="not-an-object"),
    pytest.param(b'{"id": "a"}\nPAR1\x00\x01', False, id="binary-tail"),
    pytest.param(b"PAR1\x00\x01", False, id="parquet"),
])
def test_check_appendable_lets_in_only_the_jobs_own_jsonl(tmp_path: Path, content: bytes,
                                                          ok: bool) -> None:
    from acecoder.server.synth.jobs import check_appendable

    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    if ok:
        check_appendable(path)
    else:
        with pytest.raises(FailedPrecondition, match="is not a JSON object"):
            check_appendable(path)
    check_appendable(tmp_path / "absent.jsonl")
    assert path.read_bytes() == content


def test_a_job_being_cancelled_is_not_resubmitted_until_it_has_stopped(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")
    release = asyncio.Event()

    async def slow_to_stop(job: Job) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # a record still being finished
            raise

    async def main() -> None:
        jobs = JobManager(tmp_path / "state", tmp_path, slow_to_stop)
        jobs.recover()
        jobs.submit("in.jsonl", "o.jsonl", {}, "a")
        await settle()
        cancelling = asyncio.create_task(jobs.cancel("a"))
        await settle()
        assert not cancelling.done() and jobs.get("a").state == "RUNNING"
        with pytest.raises(FailedPrecondition, match="job a is being cancelled"):
            jobs.submit("in.jsonl", "o.jsonl", {}, "a")
        with pytest.raises(FailedPrecondition, match="job a is already writing"):
            jobs.submit("in.jsonl", "o.jsonl", {}, "b")
        release.set()
        assert (await cancelling).state == "CANCELLED"
        await jobs.close()

    asyncio.run(main())


def test_a_saved_job_whose_paths_left_the_data_directory_fails(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    state = tmp_path / "state"
    state.mkdir()
    (state / "moved.json").write_text(json.dumps({
        "job_id": "moved", "input_path": str(tmp_path / "old" / "in.jsonl"),
        "output_path": str(tmp_path / "old" / "out.jsonl"), "options": {}, "kind": "pairs",
        "state": "RUNNING"}))

    async def main() -> None:
        runner = GatedRunner()
        jobs = JobManager(state, tmp_path / "data", runner)
        jobs.recover()
        await settle()
        job = jobs.get("moved")
        assert job.state == "FAILED" and "is not in the server's data directory" in job.error
        assert runner.started == []
        await jobs.close()

    asyncio.run(main())
