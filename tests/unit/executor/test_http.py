"""The executor's HTTP front in process, over ASGI, in front of a fake pool: which answer each
outcome gets (SandboxFusion's shapes, our status codes), tokens and the rate limit on the
headers, the open probes, the drain, and the metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from acecoder.errors import FailedPrecondition
from acecoder.executor.config import ExecutorConfig
from acecoder.executor.http import ExecutorHttp
from acecoder.executor.service import ExecutorService
from acecoder.executor.types import ExecutionRequest, ExecutionResult, ProgramStatus, Verdict
from acecoder.executor.types import TestResult as Run
from acecoder.security import Guard, RateLimiter, Token

TOKEN = "http-token-0123456789abcdef"


class FakePool:
    """Answers each request at once with what `answer` makes of it (or raises it)."""

    jail = "fake"

    def __init__(self) -> None:
        self.seen: list[ExecutionRequest] = []
        self.gate: asyncio.Event | None = None
        self.fail: BaseException | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def execute(self, req: ExecutionRequest, *, deadline: float | None = None
                      ) -> ExecutionResult:
        self.seen.append(req)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        tests = tuple(Run(verdict=Verdict.PASSED, duration=0.01) for _ in req.tests)
        return ExecutionResult(request_id=req.request_id, status=ProgramStatus.OK, tests=tests,
                               stdout="hi\n", jail=self.jail)


def front(*, guard: Guard | None = None, max_queue: int = 4, **kw: Any
          ) -> tuple[ExecutorHttp, FakePool]:
    pool = FakePool()
    service = ExecutorService(ExecutorConfig(workers=1, max_queue=max_queue),
                              pool=pool)  # type: ignore[arg-type]
    return ExecutorHttp(service, guard=guard, **kw), pool


def client(http: ExecutorHttp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=http.app), base_url="http://ex")


def count(http: ExecutorHttp, method: str, code: str) -> float:
    value = http.metrics.registry.get_sample_value(
        "acecoder_executor_requests_total", {"method": method, "code": code})
    return value or 0.0


RUN = {"code": "print('hi')", "language": "python"}


def test_a_run_and_a_batch_are_answered_and_counted() -> None:
    async def main() -> None:
        http, pool = front()
        async with client(http) as c:
            r = await c.post("/run_code", json={**RUN, "stdin": "x"})
            assert r.status_code == 200 and r.json()["status"] == "Success"
            assert r.json()["run_result"]["stdout"] == "hi\n"
            assert pool.seen[-1].expected == ("",) and pool.seen[-1].tests == ("x",)
            r = await c.post("/acecoder/v1/run_tests", content=b'{"code": "", "tests": '
                             b'[{"input": "1", "output": "2"}, {"input": "3", "output": "4"}]}')
            assert r.status_code == 200 and r.json()["passed"] == 2
            assert (await c.get("/v1/ping")).json() == "pong"
            assert (await c.get("/health")).json() == {"status": "SERVING"}
            assert (await c.get("/run_code")).status_code == 405
            assert (await c.get("/nowhere")).json() == {"detail": "Not Found"}
        assert count(http, "run_code", "OK") == 1 and count(http, "run_tests", "OK") == 1
        latency = http.metrics.registry.get_sample_value(
            "acecoder_executor_rpc_latency_seconds_count", {"method": "run_code"})
        assert latency == 1

    asyncio.run(main())


def test_bad_requests_get_sandboxfusion_s_shapes() -> None:
    async def main() -> None:
        http, pool = front(max_body_bytes=4096)
        async with client(http) as c:
            r = await c.post("/run_code", json={"language": "python"})
            assert r.status_code == 422
            assert r.json()["detail"][0]["loc"] == ["body", "code"]
            r = await c.post("/run_code", json={**RUN, "run_timeout": 1000})
            assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT"
            assert r.json()["detail"].startswith("run_timeout 1000.0 exceeds the limit")
            r = await c.post("/acecoder/v1/run_tests", json={"code": "", "tests": [
                {"input": "x" * 10, "output": ""}], "memory_limit_MB": 1})
            assert r.status_code == 400 and "memory_limit_MB must be between" in r.json()["detail"]
            r = await c.post("/acecoder/v1/run_tests", content=b"{")
            assert r.status_code == 400 and "not JSON" in r.json()["detail"]
            r = await c.post("/run_code", content=b"x" * 5000)
            assert r.status_code == 413 and r.json()["code"] == "RESOURCE_EXHAUSTED"
        assert not pool.seen
        assert count(http, "run_code", "INVALID_ARGUMENT") == 2
        assert count(http, "run_code", "RESOURCE_EXHAUSTED") == 1

    asyncio.run(main())


def test_what_the_sandbox_cannot_do_is_a_sandbox_error_or_a_500() -> None:
    async def main() -> None:
        http, pool = front()
        async with client(http) as c:
            pool.fail = FailedPrecondition("this executor has no go toolchain")
            r = await c.post("/run_code", json=RUN)
            assert r.status_code == 200 and r.json()["status"] == "SandboxError"
            assert "no go toolchain" in r.json()["message"]
            pool.fail = RuntimeError("a bug of ours")
            r = await c.post("/run_code", json=RUN)
            assert r.status_code == 200 and r.json()["status"] == "SandboxError"
            assert "a bug of ours" not in r.text  # details stay in the log
            r = await c.post("/acecoder/v1/run_tests", json={"code": "", "tests": ["assert 1"]})
            assert r.status_code == 500 and r.json()["code"] == "INTERNAL"
        assert count(http, "run_code", "FAILED_PRECONDITION") == 1
        assert count(http, "run_code", "INTERNAL") == 1
        assert count(http, "run_tests", "INTERNAL") == 1

    asyncio.run(main())


def test_a_full_queue_is_429_and_a_drain_503() -> None:
    async def main() -> None:
        http, pool = front(max_queue=0)
        pool.gate = asyncio.Event()
        async with client(http) as c:
            first = asyncio.create_task(c.post("/run_code", json=RUN))
            while not pool.seen:
                await asyncio.sleep(0.01)
            r = await c.post("/run_code", json=RUN)
            assert r.status_code == 429 and r.json()["code"] == "RESOURCE_EXHAUSTED"
            http.service.begin_drain()
            r = await c.post("/acecoder/v1/run_tests", json={"code": "", "tests": ["assert 1"]})
            assert r.status_code == 503 and r.json()["code"] == "UNAVAILABLE"
            assert (await c.get("/health")).status_code == 503
            pool.gate.set()
            assert (await first).json()["status"] == "Success"  # admitted work finishes

    asyncio.run(main())


def test_tokens_and_the_rate_limit_are_checked_on_the_headers() -> None:
    async def main() -> None:
        guard = Guard([Token("trainer", TOKEN.encode())], RateLimiter(0.001, 2))
        http, pool = front(guard=guard)
        async with client(http) as c:
            r = await c.post("/run_code", json=RUN)
            assert r.status_code == 401 and r.json()["code"] == "UNAUTHENTICATED"
            r = await c.post("/run_code", json=RUN, headers={"authorization": "Bearer nope"})
            assert r.status_code == 401 and "not one this server accepts" in r.json()["detail"]
            assert (await c.get("/v1/ping")).status_code == 200  # probes carry no token
            assert (await c.get("/health")).status_code == 200
            ok = await c.post("/run_code", json=RUN, headers={"authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200
            # verl sends no headers: the token rides in the URL
            ok = await c.post(f"/run_code?token={TOKEN}", json=RUN)
            assert ok.status_code == 200
            r = await c.post(f"/acecoder/v1/run_tests?token={TOKEN}",
                             json={"code": "", "tests": ["assert 1"]})
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert len(pool.seen) == 2
        assert count(http, "run_code", "UNAUTHENTICATED") == 2
        assert count(http, "run_tests", "RESOURCE_EXHAUSTED") == 1

    asyncio.run(main())


def test_limits_are_checked_once_at_start_up() -> None:
    with pytest.raises(ValueError, match="body cap must be > 0"):
        front(max_body_bytes=0)
    with pytest.raises(ValueError, match="header timeout must be > 0"):
        front(header_timeout=0)
