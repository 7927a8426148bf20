"""Synthesis jobs that survive the server: each job's spec and state is a JSON file in the
state directory, replaced atomically on every change; its outputs are the append-only,
id-keyed files of `pipeline.run`. A server that starts finds the jobs that were queued or
running and resumes them, so a SIGKILL at any moment loses nothing and duplicates nothing.

States: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED. A job stopped by a server
shutdown stays RUNNING on disk (and resumes at the next start); submitting a FAILED or
CANCELLED job's id again, with the same spec, resumes it.

Exactly once: a file is written by one active job at most (the files of every active job are
compared at submit and at resubmit), and a cancelled job is CANCELLED only once its work has
stopped (a thread's work is asked to stop between records and waited for). Every job file is
opened through `safefs`, below the data directory and through no link, each time it is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from acecoder.errors import FailedPrecondition, InvalidArgument, NotFound
from acecoder.jsonl import staging_path

from .pipeline import dropped_path_of, new_report
from .safefs import (
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    FilePath,
    JobPath,
    Root,
    UnsafeFile,
    temporary_path,
)

logger = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
ACTIVE = frozenset({QUEUED, RUNNING})
KINDS = ("synth", "sample", "pairs", "hard")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A job id, matched whole (`fullmatch`: `$` would let a trailing newline through)."""
T = TypeVar("T")
_FIRST_LINE_BYTES = 1 << 20


def checked_text(what: str, value: str, max_bytes: int) -> str:
    """A request's string field, or InvalidArgument naming it: no NUL byte (it ends a path
    in the kernel, and a string in most tools downstream), at most `max_bytes` in UTF-8."""
    if "\0" in value:
        raise InvalidArgument(f"{what} contains a NUL byte")
    if len(value.encode("utf-8", errors="surrogatepass")) > max_bytes:
        raise InvalidArgument(f"{what} is over {max_bytes} bytes")
    return value


def written_files(kind: str, output: Path) -> list[Path]:
    """Every file a job of `kind` writes for `output`: the output, the JSONL it stages a
    Parquet output in and the temporary file it writes that through, and a synth job's
    dropped seeds."""
    staged = cast(Path, staging_path(output))
    files = [staged] if staged == output else [output, staged, cast(Path, temporary_path(output))]
    if kind == "synth":
        files.append(cast(Path, dropped_path_of(output)))
    return files


def appended_files(kind: str, output: FilePath) -> list[FilePath]:
    """The JSONL files a job of `kind` appends its records to (and resumes from)."""
    files: list[FilePath] = [staging_path(output)]  # type: ignore[list-item,arg-type]
    if kind == "synth":
        files.append(dropped_path_of(output))
    return files


def _is_record(raw: bytes) -> bool:
    try:
        row = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(row, dict) and isinstance(row.get("id"), str)


def check_appendable(path: FilePath, *, whole: bool = True) -> None:
    """FailedPrecondition unless `path` is absent or a JSONL file a job may append to and
    resume from: every line a JSON object with a string "id", but for a last line cut short
    by a crash (which resuming drops). Resuming cuts a file at its first bad line, so a file
    that is not the job's own is refused, not cut. With `whole` False only the start of the
    first line is read (a cheap check at submit, on the event loop)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        lines = iter(f) if whole else iter([f.readline(_FIRST_LINE_BYTES)])
        for n, raw in enumerate(lines, 1):
            cut_short = not raw.endswith(b"\n") and raw.startswith(b"{")  # or a long first line
            if raw and not cut_short and not _is_record(raw):
                raise FailedPrecondition(
                    f"{path}:{n} is not a JSON object with an \"id\": the job appends JSONL "
                    "records to this file and resumes from it, and will not cut it; move it "
                    "away or choose another output_path")


async def in_thread(work: Callable[[Callable[[], bool]], T]) -> T:
    """`work(stopped)` in a thread. Cancelled, it sets what `stopped()` reads and waits for
    the thread to return (work asks between records), so nothing is written after."""
    stop = threading.Event()
    future = asyncio.ensure_future(asyncio.to_thread(work, stop.is_set))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved: the work's Stopped is the expected ending
        raise


@dataclass
class Job:
    job_id: str
    input_path: str
    output_path: str
    options: dict[str, Any]
    kind: str = "synth"
    """synth (stages 1-3), sample (4), pairs (5) or hard (6)."""
    state: str = QUEUED
    error: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    runs: int = 0
    report: dict[str, Any] = field(default_factory=new_report)
    """Live counts (not saved: recounted from the outputs when the job resumes)."""

    def spec(self) -> dict[str, Any]:
        d = asdict(self)
        del d["report"]
        return d


Runner = Callable[[Job], Awaitable[None]]
"""Runs one job to completion (`pipeline.run` with the service's models), filling job.report."""


class JobManager:
    def __init__(self, state_dir: Path, data_dir: Path, runner: Runner, *,
                 max_running: int = 1, on_change: Callable[[], None] | None = None) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {max_running}")
        self.state_dir = state_dir
        self.data_dir = data_dir.resolve()
        self.runner = runner
        self.on_change = on_change
        self.jobs: dict[str, Job] = {}
        self._slots = asyncio.Semaphore(max_running)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()
        self._data: Root | None = None
        self._states: Root | None = None

    # -- paths and persistence

    @property
    def data(self) -> Root:
        """The data directory, opened once: every job file is opened below it."""
        if self._data is None:
            self._data = Root(self.data_dir)
        return self._data

    @property
    def states(self) -> Root:
        """The state directory, opened once (it may lie in the data directory)."""
        if self._states is None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._states = Root(self.state_dir.resolve())
        return self._states

    def resolve(self, path: str, what: str) -> Path:
        """A client's path, relative to the data directory; nothing outside it. Only the text
        is read here ('..' is taken literally): a link on the way is refused each time a job
        opens the file (see `safefs`), not followed now."""
        checked_text(what, path, MAX_PATH_BYTES)
        if not path.strip():
            raise InvalidArgument(f"{what} is empty: give a path in the server's data directory")
        p = Path(path)
        full = Path(os.path.normpath(p if p.is_absolute() else self.data_dir / p))
        if full == self.data_dir or not full.is_relative_to(self.data_dir):
            raise InvalidArgument(f"{what} {path!r} is outside the server's data directory "
                                  f"{self.data_dir}")
        for name in full.relative_to(self.data_dir).parts:
            _check_name(what, name)
        return full

    def file(self, path: str | Path) -> JobPath:
        """A job's (absolute, saved) path, to be opened below the data directory."""
        try:
            relative = Path(path).relative_to(self.data_dir)
        except ValueError:
            raise FailedPrecondition(f"{path} is not in the server's data directory "
                                     f"{self.data_dir} (the server started with another "
                                     "--data-dir?)") from None
        return self.data.path(relative.as_posix())

    def _save(self, job: Job) -> None:
        job.updated = time.time()
        tmp = self.states.path(f"{job.job_id}.json.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(job.spec(), f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.states.path(f"{job.job_id}.json"))
        if self.on_change is not None:
            self.on_change()

    def recover(self) -> list[Job]:
        """Load every job of the state directory; start again those that were active."""
        resumed = []
        for name in sorted(self.states.names()):
            if not name.endswith(".json"):
                continue
            try:
                spec = json.loads(self.states.path(name).read_text(encoding="utf-8"))
                job = Job(**spec)
                if name != f"{job.job_id}.json" or not _JOB_ID.fullmatch(job.job_id):
                    raise ValueError(f"it holds job {job.job_id!r}")
            except (ValueError, TypeError, OSError, UnsafeFile) as exc:
                logger.error("ignoring unreadable job file %s: %s", self.state_dir / name, exc)
                continue
            self.jobs[job.job_id] = job
            if job.state in ACTIVE:
                resumed.append(job)
                self._start(job)
        if resumed:
            logger.info("resuming %d job(s): %s", len(resumed),
                        ", ".join(j.job_id for j in resumed))
        if self.on_change is not None:
            self.on_change()
        return resumed

    # -- the API

    def submit(self, input_path: str, output_path: str, options: dict[str, Any],
               job_id: str = "", kind: str = "synth") -> Job:
        """A new job, or the job `job_id` names back: as it is when it is queued, running or
        done, resumed when it failed or was cancelled. Its spec must be the one it was saved
        with; the files it would write must not be any other active job's."""
        if kind not in KINDS:
            raise InvalidArgument(f"kind must be one of {', '.join(KINDS)}, got {kind[:40]!r}")
        checked_text("job_id", job_id, 128)
        if job_id and not _JOB_ID.fullmatch(job_id):
            raise InvalidArgument(f"job_id {job_id!r} must be 1-128 letters, digits, '.', '_' "
                                  "or '-', starting with a letter or digit")
        source = self.resolve(input_path, "input_path")
        target = self.resolve(output_path, "output_path")
        written = written_files(kind, target)
        if source in written:
            raise InvalidArgument(
                f"output_path {output_path!r} would write over input_path {input_path!r}" +
                ("" if source == target else f" (the job writes {source.name})") +
                ": choose another output_path")
        if any(p.is_relative_to(self.state_dir.resolve()) for p in written):
            raise InvalidArgument(f"output_path {output_path!r} is in the server's job state "
                                  "directory; write elsewhere")
        for p in written:
            _check_name("output_path", p.name)
        job = self.jobs.get(job_id) if job_id else None
        if job is not None:
            self._same_spec(job, source, target, kind, options)
            if job.job_id in self._cancelled and job.state in ACTIVE:
                raise FailedPrecondition(f"job {job_id} is being cancelled; submit it again "
                                         "once it is CANCELLED")
            if job.state not in (FAILED, CANCELLED):
                return job
        self._one_writer(written, output_path, job_id)
        self._check_files(kind, source, target, input_path, output_path)
        if job is not None:
            before = job.state, job.error
            job.state, job.error = QUEUED, ""
            try:
                self._save(job)
            except BaseException:
                job.state, job.error = before
                raise
            self._start(job)
            logger.info("job %s resubmitted", job.job_id)
            return job
        job = Job(job_id or uuid.uuid4().hex[:12], str(source), str(target), options, kind)
        self.jobs[job.job_id] = job
        try:
            self._save(job)
        except BaseException:
            del self.jobs[job.job_id]
            raise
        self._start(job)
        logger.info("job %s submitted: %s -> %s", job.job_id, source, target)
        return job

    def _same_spec(self, job: Job, source: Path, target: Path, kind: str,
                   options: dict[str, Any]) -> None:
        # resuming a job under another spec would mix two jobs' records in one output
        theirs = (job.input_path, job.output_path, job.kind, _plain(job.options))
        ours = (str(source), str(target), kind, _plain(options))
        if theirs != ours:
            differ = [name for name, a, b in zip(("input_path", "output_path", "kind", "options"),
                                                 theirs, ours, strict=True) if a != b]
            raise FailedPrecondition(
                f"job {job.job_id} exists with another {' and '.join(differ)} "
                f"({job.input_path} -> {job.output_path}, kind {job.kind}, options "
                f"{json.dumps(job.options, sort_keys=True)}): submit the same spec to resume "
                "it, or use a new job_id")

    def _one_writer(self, written: list[Path], output_path: str, job_id: str) -> None:
        mine = set(written)
        for other in self.jobs.values():
            if other.job_id == job_id or other.state not in ACTIVE:
                continue
            shared = mine & set(written_files(other.kind, Path(other.output_path)))
            if shared:
                raise FailedPrecondition(
                    f"job {other.job_id} is already writing {output_path!r} (its "
                    f"{', '.join(sorted(p.name for p in shared))}); cancel it or wait for it")

    def _check_files(self, kind: str, source: Path, target: Path, input_path: str,
                     output_path: str) -> None:
        """What the job will find when it opens its files, checked now for a clear answer;
        they are checked again as they are opened."""
        try:
            found = self.file(source).regular()
        except UnsafeFile as exc:
            raise InvalidArgument(f"input_path {input_path!r}: {exc}") from None
        if not found:
            raise InvalidArgument(f"input_path {input_path!r}: no such file on the server")
        try:
            for p in written_files(kind, target):
                self.file(p).regular(writing=True)
        except UnsafeFile as exc:
            raise InvalidArgument(f"output_path {output_path!r}: {exc}") from None
        for appended in appended_files(kind, self.file(target)):
            check_appendable(appended, whole=False)

    def get(self, job_id: str) -> Job:
        checked_text("job_id", job_id, 128)
        try:
            return self.jobs[job_id]
        except KeyError:
            raise NotFound(f"no job {job_id!r} on this server") from None

    async def cancel(self, job_id: str) -> Job:
        """Stop the job and answer it CANCELLED, once its work has stopped: nothing of it is
        written after this returns. A job that ended first is answered as it ended."""
        job = self.get(job_id)
        if job.state not in ACTIVE:
            return job
        self._cancelled.add(job_id)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # not cancelled with this call: the job still stops
        self._mark_cancelled(job)
        return job

    def _mark_cancelled(self, job: Job) -> None:
        if job.job_id in self._cancelled and job.state in ACTIVE:
            job.state, job.error = CANCELLED, ""
            self._save(job)
            logger.info("job %s cancelled", job.job_id)

    def list(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED), 0)
        for job in self.jobs.values():
            out[job.state] += 1
        return out

    # -- running

    def _start(self, job: Job) -> None:
        self._cancelled.discard(job.job_id)
        task = asyncio.create_task(self._run(job), name=f"job-{job.job_id}")
        self._tasks[job.job_id] = task
        task.add_done_callback(lambda _: self._ended(job, task))

    def _ended(self, job: Job, task: asyncio.Task[None]) -> None:
        if self._tasks.get(job.job_id) is task:  # not a resubmitted run's task
            del self._tasks[job.job_id]
        self._mark_cancelled(job)  # the work has stopped: now it is CANCELLED

    def _check_outputs(self, job: Job) -> None:
        for appended in appended_files(job.kind, self.file(job.output_path)):
            check_appendable(appended)

    async def _run(self, job: Job) -> None:
        async with self._slots:
            if job.job_id in self._cancelled:
                return
            job.state, job.error, job.runs = RUNNING, "", job.runs + 1
            job.report = new_report()
            try:
                self._save(job)
                await asyncio.to_thread(self._check_outputs, job)
                await self.runner(job)
            except asyncio.CancelledError:
                if job.job_id not in self._cancelled:  # server shutdown: stays RUNNING, resumes
                    logger.info("job %s interrupted; it resumes when the server starts again",
                                job.job_id)
                raise
            except Exception as exc:
                logger.exception("job %s failed", job.job_id)
                job.state, job.error = FAILED, f"{type(exc).__name__}: {exc}"
            else:
                job.state = SUCCEEDED
                logger.info("job %s done: %d kept of %d", job.job_id, job.report["kept"],
                            job.report["seeds"])
            self._save(job)

    async def close(self) -> None:
        """Stop running jobs without changing their saved state (they resume at next start)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for root in (self._data, self._states):
            if root is not None:
                root.close()
        self._data = self._states = None


def _check_name(what: str, name: str) -> None:
    size = len(name.encode("utf-8", errors="surrogatepass"))
    if size > MAX_NAME_BYTES:
        shown = name if len(name) <= 60 else f"{name[:20]}...{name[-30:]}"
        raise InvalidArgument(f"{what}: the name {shown!r} is {size} bytes, over the "
                              f"{MAX_NAME_BYTES} a file name may have")


def _plain(options: dict[str, Any]) -> Any:
    """Options as they are saved (and read back) in a job's state file."""
    return json.loads(json.dumps(options, sort_keys=True))
