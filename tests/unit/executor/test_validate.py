from __future__ import annotations

import pytest

from acecoder.errors import InvalidArgument
from acecoder.executor.config import ExecutorConfig
from acecoder.executor.service import validate

CFG = ExecutorConfig(workers=1, max_tests=5, max_program_bytes=100)


def test_defaults_and_ids() -> None:
    r = validate(CFG, program=b"x = 1", tests=["assert x"])
    assert r.timeout == CFG.default_timeout and r.memory_mb == CFG.default_memory_mb
    assert len(r.request_id) == 32
    assert validate(CFG, program="", tests=["1"], request_id="mine").request_id == "mine"


@pytest.mark.parametrize(("kw", "message"), [
    ({"program": b"\xff"}, "program is not valid UTF-8 (bad byte at offset 0)"),
    ({"program": "x" * 101}, "program is 101 bytes; the limit is 100 (max_program_bytes)"),
    ({"setup": b"\xc3"}, "setup is not valid UTF-8"),
    ({"tests": []}, "tests is empty"),
    ({"tests": ["1"] * 6}, "6 tests sent; the limit is 5 (max_tests)"),
    ({"tests": ["1", ""]}, "tests[1] is empty"),
    ({"timeout": 0}, "timeout_seconds must be a positive number, got 0"),
    ({"timeout": float("inf")}, "timeout_seconds must be a positive number"),
    ({"timeout": 61}, "exceeds the limit of 60.0"),
    ({"memory_mb": 8}, "memory_limit_mb must be between 16 and"),
    ({"request_id": "x" * 300}, "request_id is longer than 256"),
])
def test_bad_fields(kw: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"program": "x = 1", "tests": ["assert x"], **kw}
    with pytest.raises(InvalidArgument) as err:
        validate(CFG, **fields)  # type: ignore[arg-type]
    assert message in str(err.value)
    assert err.value.grpc_code == "INVALID_ARGUMENT"


@pytest.mark.parametrize(("kw", "message"), [
    ({"workers": 0}, "workers must be >= 1"),
    ({"jail": "docker"}, "jail must be 'auto'"),
    ({"default_timeout": 0}, "default_timeout must be > 0"),
    ({"default_timeout": 100}, "exceeds max_timeout"),
    ({"default_memory_mb": 4}, "default_memory_mb must be in"),
    ({"max_tests": 0}, "max_tests must be >= 1"),
    ({"uid_base": 0}, "uid_base must be an unprivileged"),
])
def test_bad_config(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="invalid executor config") as err:
        ExecutorConfig(**kw)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_capture_bytes_is_bounded_and_defaults_to_the_server_s() -> None:
    stdio = {"program": "print(1)", "tests": [], "stdio": [("", "1")]}
    assert validate(CFG, **stdio).capture_bytes == 0  # type: ignore[arg-type]
    assert validate(CFG, **stdio, capture_bytes=1 << 20).capture_bytes == 1 << 20  # type: ignore[arg-type]
    for bad in (-1, CFG.max_output_limit + 1):
        with pytest.raises(InvalidArgument, match="capture_bytes must be between 0 and"):
            validate(CFG, **stdio, capture_bytes=bad)  # type: ignore[arg-type]
