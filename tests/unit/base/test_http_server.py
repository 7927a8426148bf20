"""The HTTP plumbing servers share (acecoder/http_server.py), with fake requests: a missing
extra is named, bodies are read within their bounds, and work stops when its caller leaves."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from acecoder import http_server
from acecoder.errors import InvalidArgument


class FakeRequest:
    """What the plumbing reads of a starlette Request: headers, the body's chunks, and whether
    the caller is still there."""

    def __init__(self, chunks: list[bytes], *, headers: dict[str, str] | None = None,
                 pause: float = 0.0, gone: bool = False) -> None:
        self.headers = headers or {}
        self.chunks = chunks
        self.pause = pause
        self.gone = gone

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.pause)
            yield chunk

    async def is_disconnected(self) -> bool:
        return self.gone


def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    http_server.require("http")  # installed here
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what an import of a missing one does
    with pytest.raises(ValueError, match=r"needs uvicorn.*pip install 'acecoder\[http\]'"):
        http_server.require("http")


def test_a_body_is_read_within_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        read = http_server.read_body
        assert await read(FakeRequest([b"ab", b"c"]), 3) == b"abc"
        with pytest.raises(http_server.TooLarge) as err:
            await read(FakeRequest([b"ab", b"cd"]), 3, hint="send less")
        assert err.value.http_status == 413 and "send less" in str(err.value)
        with pytest.raises(http_server.TooLarge):  # announced: refused before reading
            await read(FakeRequest([], headers={"content-length": "4"}), 3)
        with pytest.raises(InvalidArgument, match="Content-Length is not a number"):
            await read(FakeRequest([], headers={"content-length": "-1"}), 3)
        monkeypatch.setattr(http_server, "BODY_TIMEOUT", 0.05)
        with pytest.raises(http_server.TooSlow) as slow:
            await read(FakeRequest([b"a", b"b"], pause=1.0), 3)
        assert http_server.http_status(slow.value) == 408

    asyncio.run(main())


def test_work_is_cancelled_when_its_caller_leaves() -> None:
    async def main() -> None:
        cancelled = asyncio.Event()

        async def work() -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "done"

        with pytest.raises(http_server.CallerGone) as err:
            await http_server.unless_gone(FakeRequest([], gone=True), work())
        assert cancelled.is_set() and http_server.http_status(err.value) == 499

        async def quick() -> str:
            return "done"

        assert await http_server.unless_gone(FakeRequest([]), quick()) == "done"

    asyncio.run(main())
