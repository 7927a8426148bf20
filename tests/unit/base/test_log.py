from __future__ import annotations

import asyncio
import logging

from acecoder import log


def test_request_id_is_in_every_record(caplog) -> None:  # type: ignore[no-untyped-def]
    logger = logging.getLogger("acecoder.test")
    caplog.handler.addFilter(log.RequestIdFilter())

    async def handle(rid: str) -> None:
        log.request_id.set(rid)
        await asyncio.sleep(0)
        logger.warning("working")

    async def main() -> None:
        await asyncio.gather(handle("a"), handle("b"))

    asyncio.run(main())
    assert sorted(r.request_id for r in caplog.records) == ["a", "b"]  # type: ignore[attr-defined]
    logger.warning("outside")
    assert caplog.records[-1].request_id == "-"  # type: ignore[attr-defined]
