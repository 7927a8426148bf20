"""The test process: runs the tests, the only place verdicts are decided.

It never runs a line of the program. Names the program defines are bound to `Remote` proxies;
calling one asks the program process over a pipe and gets back plain data (or another proxy).
So `assert f(3) == 7` compares two plain values with our own CPython: a program that returns an
always-equal object, patches builtins, exits, or prints fake markers cannot make it pass.
Verdicts go to the worker on a pipe the program process does not hold.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import io
import marshal
import os
import pickle
import socket
import sys
import types
from typing import Any

from . import wire

REPLY_LIMIT = 64 * 1024 * 1024
_MSG_CAP = 2000


class PeerLost(BaseException):
    """The program process died or broke the protocol; the worker decides the verdict."""


class _Conn:
    def __init__(self, to_prog: int, from_prog: int) -> None:
        self.to_prog = to_prog
        self.from_prog = from_prog
        # Set once the program process is gone, so a test's bare `except:` cannot hide it.
        self.lost = False
        # Set once a reply was malformed: the stream is out of step, every later call fails.
        self.broken = ""
        # Attempts to fool a test seen since the last report (see `Flag` in executor.types).
        self.flags: set[str] = set()

    def gone(self) -> PeerLost:
        self.lost = True
        return PeerLost("program process gone")

    def dumps(self, obj: Any) -> bytes:
        try:  # the C pickler; proxies reduce to a handle reference by themselves
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            buf = io.BytesIO()  # functions the test defined go over as code
            _ArgPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
            return buf.getvalue()

    def request(self, req: tuple[Any, ...]) -> Any:
        if self.broken:
            raise ProtocolError(self.broken)
        try:
            wire.write_frame(self.to_prog, self.dumps(req))
        except OSError:
            raise self.gone() from None
        try:
            reply = wire.recv_plain(self.from_prog, REPLY_LIMIT)
        except wire.FrameError as exc:
            if "closed" in str(exc):
                raise self.gone() from None
            self.broken = f"the program broke the protocol: {exc}"
            raise ProtocolError(self.broken) from None
        return reply

    def ask(self, req: tuple[Any, ...]) -> Any:
        return self.decode(self.request(req))

    def check_claim(self, hid: int, op: str, other: Any) -> None:
        """The program's object was compared with plain data, which the trusted check decides
        without it. Ask whether the object's own __eq__/__ne__ (code the program wrote) claims
        the comparison holds: if so, the program tried to fool the test; flag it."""
        try:
            claimed = self.ask(("claims", hid, op, other))
        except PeerLost:
            raise
        except Exception:  # unpicklable test data, a program that raised: nothing to flag
            return
        if claimed is True:
            self.flags.add("OVERRIDDEN_EQUALITY")

    def decode(self, reply: Any) -> Any:
        if not isinstance(reply, tuple) or not reply:
            raise ProtocolError("malformed reply")
        kind = reply[0]
        if kind == "value" and len(reply) in (2, 3):
            return reply[1]
        if kind == "handle" and len(reply) in (4, 5):
            _, hid, tname, is_callable = reply[:4]
            if type(hid) is not int or type(tname) is not str:
                raise ProtocolError("malformed handle")
            return Remote(self, hid, tname[:200], bool(is_callable))
        if kind == "items" and len(reply) == 2 and type(reply[1]) is list:
            return [self.decode(item) for item in reply[1]]
        if kind == "raise" and len(reply) == 4:
            _, what, name, message = reply
            raise _remote_exception(str(what), str(name)[:200], str(message)[:_MSG_CAP])
        raise ProtocolError(f"unexpected reply {kind!r}")


class ProtocolError(Exception):
    """The program process sent something that is not a valid reply."""


def _remote_exception(what: str, name: str, message: str) -> BaseException:
    """An exception to raise in the test: the builtin class of the same name where there is one
    (so tests can catch ValueError), tagged so the verdict knows it came from the program."""
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)) or what != "error":
        cls = ProgramError
    try:
        exc = cls(message)
    except Exception:
        exc = ProgramError(message)
    exc.acecoder_remote = (what, name)  # type: ignore[attr-defined]
    return exc


class ProgramError(Exception):
    """An exception raised by the program whose type has no builtin counterpart here."""


class Remote:
    """A proxy for an object living in the program process."""

    __slots__ = ("_conn", "_hid", "_type", "_callable")

    def __init__(self, conn: _Conn, hid: int, tname: str, is_callable: bool) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_hid", hid)
        object.__setattr__(self, "_type", tname)
        object.__setattr__(self, "_callable", is_callable)

    def _ask(self, op: str, *rest: Any) -> Any:
        return self._conn.ask((op, self._hid, *rest))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        conn = self._conn
        reply = conn.request(("call", self._hid, args, kwargs))
        if isinstance(reply, tuple) and len(reply) in (3, 5) and reply[0] in ("value", "handle"):
            _apply_mutations(args, reply[-1])
            reply = reply[:-1]
        return conn.decode(reply)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._ask("attr", name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("cannot set attributes on the program's objects from a test")

    def __getitem__(self, key: Any) -> Any:
        return self._ask("item", key)

    def __len__(self) -> int:
        return _typed(self._ask("len"), int)

    def __bool__(self) -> bool:
        return _typed(self._ask("bool"), bool)

    def __iter__(self) -> Any:
        return iter(_typed(self._ask("iter"), list))

    def __next__(self) -> Any:
        return self._ask("next")

    def __contains__(self, item: Any) -> bool:
        return _typed(self._ask("contains", item), bool)

    def __repr__(self) -> str:
        return _typed(self._ask("repr"), str)

    def __str__(self) -> str:
        return _typed(self._ask("str"), str)

    def __int__(self) -> int:
        return _typed(self._ask("int"), int)

    def __float__(self) -> float:
        return _typed(self._ask("float"), float)

    def __index__(self) -> int:
        return _typed(self._ask("index"), int)

    def __hash__(self) -> int:
        return hash((id(self._conn), self._hid))

    def __reduce__(self) -> Any:
        return (handle_ref, (self._hid,))

    # Comparisons: between two of the program's objects the program decides (both sides are
    # its own); against plain data it never does, so an always-equal object compares unequal.
    def _cmp(self, op: str, other: Any) -> Any:
        if isinstance(other, Remote) and other._conn is self._conn:
            return _typed(self._ask("cmp", op, other._hid), bool)
        if op in ("eq", "ne"):
            self._conn.check_claim(self._hid, op, other)
        return NotImplemented

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return self._cmp("eq", other)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        return self._cmp("ne", other)

    def __lt__(self, other: Any) -> Any:
        return self._cmp("lt", other)

    def __le__(self, other: Any) -> Any:
        return self._cmp("le", other)

    def __gt__(self, other: Any) -> Any:
        return self._cmp("gt", other)

    def __ge__(self, other: Any) -> Any:
        return self._cmp("ge", other)


def handle_ref(hid: int) -> Any:
    """Stands for "the program's object number hid" in a pickled request; the program process
    resolves it to its own object."""
    raise RuntimeError("only meaningful inside the program process")


def _typed(value: Any, kind: type) -> Any:
    if type(value) is not kind:
        raise ProtocolError(f"expected {kind.__name__}, program sent {type(value).__name__}")
    return value


def _apply_mutations(args: tuple[Any, ...], mutations: Any) -> None:
    """Mirror in-place changes the program made to list/dict/set arguments."""
    if type(mutations) is not tuple:
        return
    for entry in mutations:
        if type(entry) is not tuple or len(entry) != 2 or type(entry[0]) is not int:
            continue
        i, new = entry
        if not 0 <= i < len(args):
            continue
        old = args[i]
        if type(old) is list and type(new) is list:
            old[:] = new
        elif type(old) is dict and type(new) is dict:
            old.clear()
            old.update(new)
        elif type(old) is set and type(new) is set:
            old.clear()
            old.update(new)
        elif type(old) is bytearray and type(new) is bytearray:
            old[:] = new


class _ArgPickler(pickle.Pickler):
    """Pickles call arguments: proxies by reference, test-defined functions by code."""

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Remote):
            return ("h", obj._hid)
        if type(obj) is types.FunctionType:
            cells = tuple(c.cell_contents for c in obj.__closure__) if obj.__closure__ else ()
            return ("fn", marshal.dumps(obj.__code__), obj.__name__, obj.__defaults__, cells)
        return None


def shadowable_builtins(tests: list[str], program_names: set[str]) -> set[str]:
    """Builtin names the program may shadow for these tests.

    A program that defines `sum` (MBPP's task 126 asks for one) must have the tests call its
    `sum`. But a program that defines `abs`, `sorted` or `set` must not get to decide the check
    itself (`abs(f(x) - 3) < 1e-6`, `set(f(x)) == set((4, 5))`). So a builtin name is handed to
    the program only if every use of it in the tests is a call whose arguments involve none of
    the program's names (the function under test, called on constants), or a bare argument of
    a call (HumanEval's `check(sum)`), and it never appears on the expected side of a
    comparison.
    """
    candidates = {n for n in program_names if hasattr(builtins, n)}
    if not candidates:
        return set()
    allowed = set(candidates)
    for src in tests:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            return set()
        ok_nodes: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                for comp in node.comparators:
                    for sub in ast.walk(comp):
                        if isinstance(sub, ast.Name):
                            allowed.discard(sub.id)
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Name) and node.func.id in candidates:
                    arg_names = {sub.id for a in [*node.args, *node.keywords]
                                 for sub in ast.walk(a) if isinstance(sub, ast.Name)}
                    if not arg_names & program_names:
                        ok_nodes.add(id(node.func))
                for a in node.args:
                    if isinstance(a, ast.Name):
                        ok_nodes.add(id(a))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in candidates and id(node) not in ok_nodes:
                allowed.discard(node.id)
    return allowed


class _TestLocals(dict):  # type: ignore[type-arg]
    """The tests' module-level name lookups. The program's plain globals (a list it appends to,
    a constant) are fetched afresh on each use, so tests see their current value; everything a
    test defines is written through to the globals, where functions it defines look."""

    def __init__(self, globals_: dict[str, Any], live: set[str], conn: _Conn) -> None:
        super().__init__()
        self.globals_ = globals_
        self.live = live
        self.conn = conn

    def __getitem__(self, name: str) -> Any:
        if name in self.live:
            return self.conn.ask(("global", None, name))
        return self.globals_[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.live.discard(name)
        self.globals_[name] = value

    def __delitem__(self, name: str) -> None:
        self.live.discard(name)
        del self.globals_[name]

    def __contains__(self, name: object) -> bool:
        return name in self.live or name in self.globals_


def _bind_program_names(ns: dict[str, Any], conn: _Conn, names: Any, tests: list[str],
                        live: set[str]) -> None:
    if type(names) is not dict:
        raise ProtocolError("malformed name table")
    program_names = {n for n in names if type(n) is str}
    shadowable = shadowable_builtins(tests, program_names)
    for name, entry in names.items():
        if type(name) is not str or not name.isidentifier() or name.startswith("__"):
            continue
        if hasattr(builtins, name) and name not in shadowable:
            continue  # tests see the real builtin (see shadowable_builtins)
        if type(entry) is not tuple or not entry:
            continue
        if entry[0] == "module" and len(entry) == 2 and type(entry[1]) is str:
            try:
                ns[name] = importlib.import_module(entry[1])
            except Exception:
                continue
        else:
            try:
                ns[name] = conn.decode(entry)
            except (ProtocolError, Exception):
                continue
            if entry[0] == "value":
                live.add(name)


def _trim(text: str) -> str:
    return text if len(text) <= _MSG_CAP else text[:_MSG_CAP] + "...[trimmed]"


def _classify(exc: BaseException) -> tuple[str, str, str]:
    """(verdict, error type, message) of a test that raised."""
    try:
        message = _trim(str(exc))
    except Exception:
        message = "<unprintable>"
    remote = getattr(exc, "acecoder_remote", None)
    if remote is not None:
        what, name = remote
        if what == "memory":
            return "MEMORY", name, message
        return "ERROR", name, message
    if isinstance(exc, ProtocolError):
        return "ERROR", "ProtocolError", message
    if isinstance(exc, AssertionError):
        return "FAILED", "AssertionError", message
    if isinstance(exc, MemoryError):
        return "MEMORY", "MemoryError", message
    return "ERROR", type(exc).__name__, message


class _Suite:
    """A test suite compiled once, for every program a reused test process runs it against."""

    def __init__(self, tests: list[str], setup: str) -> None:
        self.tests = tests
        self.setup = setup
        self.code: list[Any] = []
        for i, src in enumerate(tests):
            try:
                self.code.append(compile(src, f"<test {i}>", "exec"))
            except BaseException as exc:  # reported as that test's verdict
                self.code.append(exc)
        self.setup_code = compile(setup, "<setup>", "exec") if setup else None


def run_job(ctrl: int, conn: _Conn, suite: _Suite, start: int, stop_on_first_failure: bool) -> str:
    """Run suite.tests[start:] against the program on `conn`, reporting to the worker on
    `ctrl`. Returns the last message sent: end, load_failed, setup_failed or lost."""
    try:
        first = wire.recv_plain(conn.from_prog, REPLY_LIMIT)
    except wire.FrameError:
        wire.send(ctrl, ("lost", -1))
        return "lost"
    if type(first) is tuple and first and first[0] == "load_failed" and len(first) == 4:
        wire.send(ctrl, ("load_failed", str(first[1]), _trim(str(first[2])), _trim(str(first[3]))))
        return "load_failed"
    if not (type(first) is tuple and len(first) == 2 and first[0] == "loaded"):
        wire.send(ctrl, ("load_failed", "error", "ProtocolError", "malformed load report"))
        return "load_failed"
    ns: dict[str, Any] = {"__name__": "__tests__", "__builtins__": builtins}
    live: set[str] = set()
    local_ns = _TestLocals(ns, live, conn)
    try:
        _bind_program_names(ns, conn, first[1], suite.tests, live)
        if suite.setup_code is not None:
            exec(suite.setup_code, ns, local_ns)
    except PeerLost:
        wire.send(ctrl, ("lost", -1))
        return "lost"
    except BaseException as exc:
        wire.send(ctrl, ("setup_failed", type(exc).__name__, _trim(str(exc))))
        return "setup_failed"
    wire.send(ctrl, ("loaded",))
    for i in range(start, len(suite.tests)):
        code = suite.code[i]
        try:
            if isinstance(code, BaseException):
                raise code
            exec(code, ns, local_ns)
            verdict, etype, emsg = "PASSED", "", ""
        except PeerLost:
            pass
        except BaseException as exc:
            verdict, etype, emsg = _classify(exc)
        if conn.lost:
            wire.send(ctrl, ("lost", i))
            return "lost"
        sys.stdout.flush()
        sys.stderr.flush()
        for flag in sorted(conn.flags):
            wire.send(ctrl, ("flag", flag))
        conn.flags.clear()
        wire.send(ctrl, ("done", i, verdict, etype, emsg))
        if stop_on_first_failure and verdict != "PASSED":
            break
    wire.send(ctrl, ("end",))
    return "end"


def serve(*, ctrl: int, jobs: int) -> None:
    """The test process's loop: each message on the `jobs` socket carries a program process's
    pipes (and, the first time, the suite); the suite runs against it. The worker reuses one
    test process only for byte-identical tests and setup, and only after a clean "end"."""
    sock = socket.socket(fileno=jobs)
    suite: _Suite | None = None
    while True:
        try:
            msg, fds = wire.recv_msg(sock, 2)  # from the worker, which is trusted
        except (wire.FrameError, OSError):
            return
        if "tests" in msg:
            suite = _Suite(msg["tests"], msg["setup"])
        if suite is None or len(fds) != 2:
            return
        to_prog, from_prog = fds
        try:
            run_job(ctrl, _Conn(to_prog, from_prog), suite, msg["start"],
                    msg["stop_on_first_failure"])
        finally:
            os.close(to_prog)
            os.close(from_prog)
            sys.stdout.flush()
            sys.stderr.flush()
