"""The pieces of acecoder.security that need no server: token files, constant-time matching,
the per-client token bucket, and the rules on listening and on TLS settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from acecoder.security import (ClientSecurity, RateLimiter, ServerSecurity, is_loopback,
                               match_token, parse_tokens, server_security)

A, B = "a" * 20, "b" * 32


def test_token_files_and_env() -> None:
    got = parse_tokens(f"# comment\n\ntrainer {A}  # inline comment\n{B}\n")
    assert [t.name for t in got][0] == "trainer" and got[0].secret == A.encode()
    assert got[1].name.startswith("token-") and got[1].secret == B.encode()
    env = parse_tokens(f"trainer={A}, {B}", separator=",")
    assert [t.secret for t in env] == [A.encode(), B.encode()]
    with pytest.raises(ValueError, match="16 characters or more"):
        parse_tokens("short")
    with pytest.raises(ValueError, match="entry 1: expected 'NAME TOKEN'"):
        parse_tokens(f"a b {A}")


def test_match_token() -> None:
    tokens = parse_tokens(f"one {A}\ntwo {B}")
    assert match_token(B.encode(), tokens).name == "two"  # type: ignore[union-attr]
    for wrong in (b"", A[:-1].encode(), (A + "x").encode(), B.upper().encode()):
        assert match_token(wrong, tokens) is None


def test_rate_limiter_refills_per_client() -> None:
    limiter = RateLimiter(rate=2.0, burst=3, max_clients=2)
    assert [limiter.allow("x", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("y", now=0.0)  # its own bucket
    assert not limiter.allow("x", now=0.25) and limiter.allow("x", now=0.5)  # 2 per second
    assert [limiter.allow("x", now=10.0) for _ in range(4)] == [True, True, True, False]
    limiter.allow("z", now=10.0)  # a third client: the least recent one is forgotten
    assert len(limiter._buckets) == 2


def test_listening_rules(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not any(map(is_loopback, ("0.0.0.0", "::", "", "10.0.0.7", "[::]")))
    open_ = ServerSecurity()
    open_.check_listen("127.0.0.1", "executor")
    with pytest.raises(ValueError, match="refusing to serve the executor on 0.0.0.0"):
        open_.check_listen("0.0.0.0", "executor")
    ServerSecurity(trust_network=True).check_listen("0.0.0.0", "executor")
    ServerSecurity(tokens=parse_tokens(A)).check_listen("0.0.0.0", "executor")


def test_settings_are_checked(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    with pytest.raises(ValueError, match="needs both --tls-cert and --tls-key"):
        ServerSecurity(tls_cert=pem)
    with pytest.raises(ValueError, match="no such file"):
        ServerSecurity(tls_cert=pem, tls_key=tmp_path / "missing")
    with pytest.raises(ValueError, match="needs --tls-cert"):
        ServerSecurity(client_ca=pem)
    with pytest.raises(ValueError, match="--rate-limit must be > 0"):
        ServerSecurity(rate_limit=0)
    with pytest.raises(ValueError, match="holds no token"):
        (tmp_path / "empty").write_text("# nobody\n")
        server_security(tokens_file=str(tmp_path / "empty"), env={})
    assert server_security(env={"ACECODER_AUTH_TOKENS": f"t={A}"}).tokens[0].name == "t"
    with pytest.raises(ValueError, match="needs both cert and key"):
        ClientSecurity(ca=pem, cert=pem)
    with pytest.raises(ValueError, match="needs TLS"):
        ClientSecurity(cert=pem, key=pem)
    token_file = tmp_path / "token"
    token_file.write_text(A + "\n")
    got = ClientSecurity.from_env({"ACECODER_TOKEN_FILE": str(token_file)})
    assert got.token == A and got.ca is None and A not in repr(got)
