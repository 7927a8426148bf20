"""Each jail works on its own: firejail, bubblewrap, and bare namespaces."""

from __future__ import annotations

import asyncio

import pytest

from acecoder.executor import jail as jails
from acecoder.executor.config import ExecutorConfig
from acecoder.executor.pool import WorkerPool
from acecoder.executor.service import validate
from acecoder.executor.types import Verdict

PROGRAM = ("import os, socket\n"
           "def f(x):\n    return 2 * x\n"
           "def uid():\n    return os.getuid()\n"
           "def net():\n    try:\n        socket.socket()\n        return 'open'\n"
           "    except OSError:\n        return 'closed'\n"
           "def hidden(p):\n    return os.path.exists(p)\n")


@pytest.mark.parametrize("jail", jails.JAILS)
def test_jail_runs_and_confines(jail: str) -> None:
    assert jails.works(jail), f"{jail} does not start here; `make test` installs it"
    import acecoder

    checkout = str(__import__("pathlib").Path(acecoder.__file__).resolve().parents[1])

    async def go() -> None:
        cfg = ExecutorConfig(workers=1, jail=jail)
        async with WorkerPool(cfg) as pool:
            assert pool.jail == jail
            r = await pool.execute(validate(cfg, program=PROGRAM, tests=[
                "assert f(2) == 4", "assert f(2) == 5", "assert uid() == 61000",
                "assert net() == 'closed'", f"assert not hidden({checkout + '/pyproject.toml'!r})"]))
            assert r.verdicts == [Verdict.PASSED, Verdict.FAILED, Verdict.PASSED, Verdict.PASSED,
                                  Verdict.PASSED], r
            assert r.jail == jail

    asyncio.run(go())


def test_choose_prefers_firejail_and_rejects_unknown() -> None:
    assert jails.choose("auto") == "firejail"
    with pytest.raises(ValueError, match="unknown jail"):
        jails.choose("docker")
