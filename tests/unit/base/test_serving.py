"""The listen configuration every server shares (acecoder/serving.py), checked at start-up."""

from __future__ import annotations

import pytest

from acecoder.serving import ServerConfig


@pytest.mark.parametrize(("kw", "message"), [
    ({"port": 70000}, "port must be in [0, 65535], got 70000"),
    ({"http_port": -1}, "http_port must be in [0, 65535], got -1"),
    ({"grace": -1}, "grace must be >= 0"),
    ({"http_max_body_mb": 0}, "http_max_body_mb and http_header_timeout must be > 0, got 0 and"),
    ({"http_header_timeout": -1.0}, "must be > 0, got 64.0 and -1.0"),
])
def test_bad_listen_settings_are_refused_with_their_values(kw: dict[str, object],
                                                           message: str) -> None:
    with pytest.raises(ValueError) as err:
        ServerConfig(**kw)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_the_http_front_is_off_unless_asked_for() -> None:
    assert ServerConfig().http_port is None
    assert ServerConfig(http_port=0).http_port == 0
