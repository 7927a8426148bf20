"""The executor service: validation, admission control, metrics. Knows nothing of grpc."""

from __future__ import annotations

import asyncio
import json
import keyword
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from acecoder import log
from acecoder.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from acecoder.serving import Admission

from . import languages
from .config import ExecutorConfig
from .metrics import ExecutorMetrics
from .pool import WorkerPool
from .sandbox import checkers
from .types import ExecutionRequest, ExecutionResult

DEFAULT_LINGER = 0.005
"""How long a finished result of a batch waits for others to share its message, by default
(seconds; see ExecutorService.execute_batch_groups)."""
MAX_LINGER = 1.0

logger = logging.getLogger(__name__)


def _text(value: bytes | str, what: str, limit: int, limit_name: str) -> str:
    raw = value.encode("utf-8", errors="surrogatepass") if isinstance(value, str) else bytes(value)
    if len(raw) > limit:
        raise InvalidArgument(
            f"{what} is {len(raw)} bytes; the limit is {limit} ({limit_name}): send less")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"{what} is not valid UTF-8 (bad byte at offset {exc.start}): send UTF-8 text"
        ) from None


MAX_CALL_DEPTH = 100
"""The deepest a call test's JSON may nest (a Python literal much deeper does not compile)."""


def _json_value(value: bytes | str, what: str, config: ExecutorConfig) -> Any:
    """A call test's JSON, parsed; InvalidArgument if it is not plain JSON."""
    text = _text(value, what, config.max_test_bytes, "max_test_bytes")

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        data = json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise InvalidArgument(f"{what} is nested too deeply (at most {MAX_CALL_DEPTH} "
                              "levels)") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an int too long
        raise InvalidArgument(f"{what} is not JSON ({exc})") from None
    todo = [(data, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_CALL_DEPTH:
            raise InvalidArgument(f"{what} is nested more than {MAX_CALL_DEPTH} levels deep")
        if isinstance(item, float) and not math.isfinite(item):  # 1e999 parses as inf
            raise InvalidArgument(f"{what} holds a number out of a double's range ({text[:80]!r})")
        if isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
    return data


def call_statements(config: ExecutorConfig, fn_name: str,
                    calls: Sequence[tuple[bytes | str, bytes | str]], at: str = "") -> list[str]:
    """Call tests as the test statements that run them: `assert __acecoder_call__("f", [args],
    expected)` (see sandbox.harness.CallCheck: it calls the program's `f`, or `Solution().f`,
    and compares the result as plain data in the test process; the expected value never
    reaches the program). The JSON becomes Python literals, so such a suite is a suite of plain
    checks (sandbox.literal), run by the judge. InvalidArgument says what is wrong."""
    from .sandbox.harness import CALL  # the test process's module: loaded only when needed

    if not calls:
        raise InvalidArgument(f"{at}fn_name {fn_name[:100]!r} is set but call_tests is empty: "
                              "send at least one call test")
    if not fn_name:
        raise InvalidArgument(f"{at}call tests need fn_name: the function (or method of class "
                              "Solution) they call")
    if not (len(fn_name) <= 256 and fn_name.isidentifier() and not keyword.iskeyword(fn_name)
            and not fn_name.startswith("__")):
        raise InvalidArgument(f"{at}fn_name must be a Python function name (an identifier, not "
                              f"a keyword, not starting with '__'), got {fn_name[:100]!r}")
    if len(calls) > config.max_tests:
        raise InvalidArgument(f"{at}{len(calls)} tests sent; the limit is {config.max_tests} "
                              "(max_tests): split the request")
    out = []
    for i, (given, want) in enumerate(calls):
        args = _json_value(given, f"{at}call_tests[{i}].input", config)
        if not isinstance(args, list):
            raise InvalidArgument(f"{at}call_tests[{i}].input must be a JSON array of the "
                                  f"call's arguments, got {type(args).__name__}: "
                                  "send [arg1, arg2, ...]")
        expected = _json_value(want, f"{at}call_tests[{i}].output", config)
        statement = f"assert {CALL}({fn_name!r}, {args!r}, {expected!r})"
        size = len(statement.encode("utf-8", errors="surrogatepass"))
        if size > config.max_test_bytes:
            raise InvalidArgument(f"{at}call_tests[{i}] is {size} bytes as a test (its input "
                                  f"and output together); the limit is {config.max_test_bytes} "
                                  "(max_test_bytes): send less")
        out.append(statement)
    return out


def validate(
    config: ExecutorConfig,
    *,
    program: bytes | str,
    tests: Sequence[bytes | str],
    setup: bytes | str = b"",
    timeout: float | None = None,
    memory_mb: int | None = None,
    stop_on_first_failure: bool = False,
    request_id: str = "",
    where: str = "",
    stdio: Sequence[tuple[bytes | str, bytes | str]] | None = None,
    checker: str = "",
    output_limit: int | None = None,
    language: str = "",
    compile_timeout: float | None = None,
    fn_name: str = "",
    calls: Sequence[tuple[bytes | str, bytes | str]] | None = None,
    checker_source: bytes | str = b"",
    capture_bytes: int | None = None,
) -> ExecutionRequest:
    """Turn raw request fields into an ExecutionRequest, or raise InvalidArgument that says
    what to change (FailedPrecondition for a language this server has no toolchain for).
    `stdio`: (input, expected output) pairs instead of test statements: the program runs whole
    on each input, and `checker` compares its output. `fn_name` and `calls`: (JSON arguments,
    JSON output) pairs, each a call of that function compared as plain data. `capture_bytes`:
    the output kept in the result (default: the server's `output_bytes`), at most
    `max_output_limit`."""
    at = f"{where}: " if where else ""
    kind = "stdio" if stdio else "assert"
    try:
        language = languages.check(language or "python", stdio=bool(stdio), where=at)
        if compile_timeout is None:
            compile_timeout = config.compile_timeout
        if not (isinstance(compile_timeout, (int, float)) and math.isfinite(compile_timeout)
                and 0 < compile_timeout <= config.max_compile_timeout):
            raise InvalidArgument(f"{at}compile_timeout_seconds must be in (0, "
                                  f"{config.max_compile_timeout}], got {compile_timeout!r}")
        if fn_name or calls:
            if tests or stdio:
                raise InvalidArgument(f"{at}send call tests (fn_name) or test statements or "
                                      "stdio tests, not two kinds")
            tests = call_statements(config, fn_name, calls or (), at)
        prog = _text(program, f"{at}program", config.max_program_bytes, "max_program_bytes")
        setup_text = _text(setup, f"{at}setup", config.max_program_bytes, "max_program_bytes")
        inputs: list[str] = []
        checker_text = ""
        expected: list[str] = []
        if stdio:
            if tests:
                raise InvalidArgument(
                    f"{at}send either test statements or stdio tests, not both")
            if setup_text:
                raise InvalidArgument(f"{at}setup applies to test statements, not stdio tests")
            if len(stdio) > config.max_tests:
                raise InvalidArgument(
                    f"{at}{len(stdio)} tests sent; the limit is {config.max_tests} (max_tests): "
                    "split the request")
            for i, (given, want) in enumerate(stdio):
                inputs.append(_text(given, f"{at}stdio_tests[{i}].input",
                                    config.max_stdio_bytes, "max_stdio_bytes"))
                expected.append(_text(want, f"{at}stdio_tests[{i}].output",
                                      config.max_stdio_bytes, "max_stdio_bytes"))
            try:
                checker = checkers.parse(checker or "tokens").spec
            except ValueError as exc:
                raise InvalidArgument(f"{at}{exc}") from None
            checker_text = _text(checker_source, f"{at}checker_source", config.max_program_bytes,
                                 "max_program_bytes")
            if (checker == "custom") != bool(checker_text.strip()):
                raise InvalidArgument(f"{at}checker \"custom\" needs checker_source (a Python "
                                      "checker program), and checker_source needs checker "
                                      "\"custom\"")
        elif checker or checker_source:
            raise InvalidArgument(f"{at}checker applies to stdio tests, not test statements")
        if output_limit is None:
            output_limit = 16 << 20
        if not 1024 <= output_limit <= config.max_output_limit:
            raise InvalidArgument(f"{at}output_limit_bytes must be between 1024 and "
                                  f"{config.max_output_limit}, got {output_limit}")
        if capture_bytes is not None and not 0 <= capture_bytes <= config.max_output_limit:
            raise InvalidArgument(f"{at}capture_bytes must be between 0 and "
                                  f"{config.max_output_limit}, got {capture_bytes}")
        if not tests and not stdio:
            raise InvalidArgument(f"{at}tests is empty: send at least one test statement")
        if len(tests) > config.max_tests:
            raise InvalidArgument(
                f"{at}{len(tests)} tests sent; the limit is {config.max_tests} (max_tests): "
                "split the request")
        test_texts = []
        for i, t in enumerate(tests):
            text = _text(t, f"{at}tests[{i}]", config.max_test_bytes, "max_test_bytes")
            if not text.strip():
                raise InvalidArgument(f"{at}tests[{i}] is empty: every test must be a statement")
            test_texts.append(text)
        if timeout is None:
            timeout = config.default_timeout
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise InvalidArgument(f"{at}timeout_seconds must be a positive number, got {timeout!r}")
        if timeout > config.max_timeout:
            raise InvalidArgument(
                f"{at}timeout_seconds {timeout} exceeds the limit of {config.max_timeout}")
        if memory_mb is None:
            memory_mb = config.default_memory_mb
        if not 16 <= memory_mb <= config.max_memory_mb:
            raise InvalidArgument(
                f"{at}memory_limit_mb must be between 16 and {config.max_memory_mb}, "
                f"got {memory_mb}")
        if len(request_id) > 256:
            raise InvalidArgument(f"{at}request_id is longer than 256 characters")
    except (InvalidArgument, FailedPrecondition):
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{at}malformed request: {exc}") from None
    return ExecutionRequest(
        program=prog, tests=tuple(inputs or test_texts), setup=setup_text,
        timeout=float(timeout), memory_mb=int(memory_mb),
        stop_on_first_failure=bool(stop_on_first_failure),
        request_id=request_id or uuid.uuid4().hex, kind=kind, expected=tuple(expected),
        checker=checker or "tokens", output_limit=int(output_limit), language=language,
        compile_timeout=float(compile_timeout),
        checker_source=checker_text if stdio else "",
        capture_bytes=int(capture_bytes or 0),
    )


class ExecutorService:
    """Bounded admission in front of a WorkerPool.

    At most `workers + max_queue` requests (a batch counts as one) are admitted at a time;
    one more is refused at once with ResourceExhausted. While draining, new work gets
    Unavailable and admitted work runs to completion.
    """

    def __init__(self, config: ExecutorConfig, *, metrics: ExecutorMetrics | None = None,
                 pool: WorkerPool | None = None) -> None:
        self.config = config
        self.metrics = metrics or ExecutorMetrics()
        self.pool = pool or WorkerPool(config, self.metrics)
        self.admission = Admission("executor")

    @property
    def jail(self) -> str:
        return self.pool.jail

    @property
    def draining(self) -> bool:
        return self.admission.draining

    async def start(self) -> None:
        await self.pool.start()

    async def close(self) -> None:
        await self.pool.close()

    def begin_drain(self) -> None:
        self.admission.draining = True

    async def wait_idle(self, timeout: float) -> bool:
        return await self.admission.wait_idle(timeout)

    def validate(self, **fields: Any) -> ExecutionRequest:
        return validate(self.config, **fields)

    def _admit(self) -> None:
        if self.admission.draining:
            self.metrics.rejected.labels(reason="draining").inc()
        capacity = self.config.workers + self.config.max_queue
        if not self.admission.draining and self.admission.admitted >= capacity:
            self.metrics.rejected.labels(reason="queue_full").inc()
            raise ResourceExhausted(
                f"the executor queue is full ({capacity} requests admitted); retry with backoff")
        self.admission.admit()

    def _release(self) -> None:
        self.admission.release()

    async def _run_one(self, req: ExecutionRequest, deadline: float | None) -> ExecutionResult:
        log.request_id.set(req.request_id)
        started = time.monotonic()
        self.metrics.inflight.inc()
        try:
            result = await self.pool.execute(req, deadline=deadline)
        finally:
            self.metrics.inflight.dec()
        self.metrics.program_latency.observe(time.monotonic() - started)
        logger.debug("%s in %.1f ms: %d/%d passed", result.status.value,
                     1000 * (time.monotonic() - started), result.passed, len(result.tests))
        self.metrics.programs.labels(status=result.status.value).inc()
        for t in result.tests:
            self.metrics.verdicts.labels(verdict=t.verdict.value).inc()
        return result

    async def execute(self, req: ExecutionRequest, *,
                      deadline: float | None = None) -> ExecutionResult:
        """Run one validated request. `deadline` is a time.monotonic() value."""
        self._admit()
        try:
            return await self._run_one(req, deadline)
        finally:
            self._release()

    async def execute_batch(self, reqs: Sequence[ExecutionRequest], *,
                            deadline: float | None = None) -> AsyncIterator[ExecutionResult]:
        """Run many; yield each result (with `index` set) as soon as it is ready."""
        async for group in self._groups(reqs, deadline, linger=None):
            for result in group:
                yield result

    async def execute_batch_groups(
            self, reqs: Sequence[ExecutionRequest], *, deadline: float | None = None,
            linger: float = DEFAULT_LINGER) -> AsyncIterator[list[ExecutionResult]]:
        """Run many; yield the results (with `index` set) in groups, in the order they
        finished: a group holds every result that finished within `linger` seconds of its
        first (never past `deadline`), so that a stream sends one message where it would
        send several. The same results as `execute_batch`, each once."""
        if not 0.0 <= linger <= MAX_LINGER:  # (NaN too)
            raise InvalidArgument(
                f"linger_seconds must be between 0 and {MAX_LINGER:g}, got {linger}")
        async for group in self._groups(reqs, deadline, linger):
            yield group

    async def _groups(self, reqs: Sequence[ExecutionRequest], deadline: float | None,
                      linger: float | None) -> AsyncIterator[list[ExecutionResult]]:
        """The results of `reqs` as they finish: one at a time (`linger` None), or with every
        other result that finished within `linger` seconds. A request that raised ends the
        stream with its error, after the results that finished before it."""
        self._admit()
        try:
            limit = asyncio.Semaphore(self.config.workers)

            async def one(index: int, req: ExecutionRequest) -> ExecutionResult:
                async with limit:
                    result = await self._run_one(req, deadline)
                return _with_index(result, index)

            finished: list[asyncio.Task[ExecutionResult]] = []  # in the order they finished
            arrived = asyncio.Event()
            every = asyncio.get_running_loop().create_future()  # done once all have finished
            count = [0]

            def done(task: asyncio.Task[ExecutionResult]) -> None:
                finished.append(task)
                arrived.set()
                count[0] += 1
                if count[0] == len(tasks) and not every.done():
                    every.set_result(None)

            tasks = [asyncio.create_task(one(i, r)) for i, r in enumerate(reqs)]
            for task in tasks:
                task.add_done_callback(done)
            left = len(tasks)
            try:
                while left:
                    if not finished:
                        arrived.clear()
                        await arrived.wait()
                    if linger is None:
                        take = finished[:1]
                    else:
                        wait = linger if deadline is None else min(
                            linger, deadline - time.monotonic())
                        if wait > 0 and len(finished) < left:  # (not past the last one)
                            await asyncio.wait([every], timeout=wait)
                        take = finished[:]
                    del finished[:len(take)]
                    left -= len(take)
                    group: list[ExecutionResult] = []
                    for task in take:
                        try:
                            group.append(task.result())
                        except BaseException:
                            if group:
                                yield group
                            raise
                    yield group
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._release()


def _with_index(result: ExecutionResult, index: int) -> ExecutionResult:
    return replace(result, index=index)
