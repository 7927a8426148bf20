"""The pieces of acecoder.security that need no server: token files, constant-time matching,
the per-client token bucket, and the rules on listening and on TLS settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from acecoder.errors import ResourceExhausted, Unauthenticated
from acecoder.security import (ClientSecurity, Guard, RateLimiter, ServerSecurity, client_name,
                               is_loopback, match_token, parse_tokens, peer_address,
                               server_security)

A, B = "a" * 20, "b" * 32


def test_token_files_and_env() -> None:
    got = parse_tokens(f"# comment\n\ntrainer {A}\n  # an indented comment\n{B}\n")
    assert [t.name for t in got][0] == "trainer" and got[0].secret == A.encode()
    assert got[1].name.startswith("token-") and got[1].secret == B.encode()
    assert len(got) == 2
    env = parse_tokens(f"trainer={A}, {B}", separator=",")
    assert [t.secret for t in env] == [A.encode(), B.encode()]
    with pytest.raises(ValueError, match="16 characters or more"):
        parse_tokens("short")
    with pytest.raises(ValueError, match="entry 1: expected 'NAME TOKEN'"):
        parse_tokens(f"a b {A}")


def test_a_hash_inside_a_token_is_part_of_it() -> None:
    """Comments are whole lines: a `#` anywhere else belongs to the name or the token, so a
    token is never silently cut short (to something a guesser could find)."""
    secret = "0123456789#abcdef0123"
    got = parse_tokens(f"trainer {secret}\n#{A}\n{B}#x\n")
    assert [t.secret for t in got] == [secret.encode(), f"{B}#x".encode()]
    assert match_token(b"0123456789", got) is None
    assert parse_tokens(f"team#1 {A}")[0].name == "team#1"
    # what used to be a trailing comment is now an error, not a token cut at the `#`
    with pytest.raises(ValueError, match="comments are whole lines"):
        parse_tokens(f"trainer {A}  # who")
    env = parse_tokens(f"t={secret},{B}", separator=",")
    assert env[0].secret == secret.encode()


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


def test_a_call_costs_its_items() -> None:
    limiter = RateLimiter(rate=10.0, burst=20)
    assert limiter.take("x", 15, now=0.0) == 0.0
    assert limiter.take("x", 10, now=0.0) == pytest.approx(0.5)  # 5 left: 5 more at 10/s
    assert limiter.take("x", 10, now=0.5) == 0.0
    assert limiter.take("x", 21, now=100.0) == math.inf  # over the burst: never
    assert limiter.take("x", 20, now=100.0) == 0.0  # and it cost nothing
    # over any stretch of time a client gets `rate` items a second and no more
    limiter = RateLimiter(rate=10.0, burst=20)
    let_in = sum(5 for t in range(100) if limiter.take("y", 5, now=t * 0.1) == 0.0)
    assert let_in <= 20 + 10 * 10
    guard = Guard((), RateLimiter(rate=1.0, burst=4))
    with pytest.raises(ResourceExhausted, match="carries 5 items, more than the 4") as err:
        guard.charge("x", 5)
    assert err.value.retry_after is None  # waiting would not help
    guard.charge("x", 4)
    with pytest.raises(ResourceExhausted, match="over 1 items/s") as err:
        guard.charge("x", 1)
    assert err.value.retry_after == pytest.approx(1.0, abs=0.05)


def test_guard_limits_failed_authentications_per_address() -> None:
    guard = Guard(parse_tokens(f"trainer {A}"), None, failures=RateLimiter(1 / 60, 3))
    bad = Unauthenticated("no")
    assert guard.authenticate(f"Bearer {A}").name == "trainer"  # type: ignore[union-attr]
    with pytest.raises(Unauthenticated):
        guard.authenticate("Bearer " + "x" * 20)
    with pytest.raises(Unauthenticated, match="needs a bearer token"):
        guard.authenticate(None)
    assert [type(guard.failed("ipv4:10.0.0.1", bad)).__name__ for _ in range(4)] == \
        ["Unauthenticated"] * 3 + ["ResourceExhausted"]
    locked = guard.failed("ipv4:10.0.0.1", bad)
    assert "too many failed authentications" in str(locked)
    assert locked.retry_after is not None and locked.retry_after > 0  # type: ignore[attr-defined]
    assert guard.failed("ipv4:10.0.0.2", bad) is bad  # another address has its own budget
    assert guard.authenticate(None, query_token=A).name == "trainer"  # type: ignore[union-attr]


def test_clients_are_named_alike_on_grpc_and_http() -> None:
    assert peer_address("ipv4:127.0.0.1:5555") == peer_address("127.0.0.1") == "ipv4:127.0.0.1"
    assert peer_address("ipv6:[::1]:5555") == peer_address("::1") == "ipv6:[::1]"
    assert peer_address("unix:/tmp/x") == "unix:/tmp/x"
    token = parse_tokens(f"trainer {A}")[0]
    assert client_name(token, "cn", "ipv4:1.2.3.4") == "trainer"
    assert client_name(None, "x", "ipv4:1.2.3.4") == "cn:x"
    assert client_name(None, None, "ipv4:1.2.3.4") == "ipv4:1.2.3.4"


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
    with pytest.raises(ValueError, match="--auth-failures must be >= 1"):
        ServerSecurity(auth_failures=0)
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
