"""The program host: loads the untrusted program and answers the test process's requests.

Everything in this process is untrusted once the program has run: it may have rewritten this
very module. That is fine by design. The only thing it can send is plain data, decoded by
the test process with `wire.decode_plain`, and it never sees the tests or any expected value,
so it cannot know what answer would pass them: requests carry only the arguments a test passes,
and comparisons are made in the test process on plain copies (there is no request that asks the
program to compare anything).

Only the process the worker started serves the channel: a child the program forks that returns
into this loop exits instead of reading a request or writing a reply (the pid is checked before
each), so a later call can never get another call's answer.
"""

from __future__ import annotations

import builtins
import io
import marshal
import os
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

from . import wire
from .plain import NotPlain, TooLarge, to_plain

# Exception messages are diagnostics, not values: long ones are cut (and say so).
_MSG_CAP = 64 * 1024
# A reply must fit the test process's frame limit (harness.REPLY_LIMIT); a larger one is an
# error that says so, never a cut-short value.
_REPLY_CAP = 64 * 1024 * 1024 - 4096
_MUTABLE = (list, dict, set, bytearray)


def _trim(text: str) -> str:
    return text if len(text) <= _MSG_CAP else text[:_MSG_CAP] + "...[trimmed]"


def _overrides_equality(value: Any) -> bool:
    """Whether the object's class (not a builtin base) defines __eq__ or __ne__ in Python. Only
    for the OVERRIDDEN_EQUALITY flag: no test data is needed to answer, and no verdict hangs on
    the answer."""
    try:
        for cls in type(value).__mro__:
            if cls is object:
                continue
            for name in ("__eq__", "__ne__"):
                if isinstance(cls.__dict__.get(name), types.FunctionType):
                    return True
    except BaseException:
        pass
    return False


def _describe_exc(exc: BaseException) -> tuple[str, str, str]:
    """(kind, type name, message); kind is memory, exit or error."""
    try:
        message = _trim(str(exc))
    except BaseException:  # a hostile __str__
        message = "<unprintable>"
    name = type(exc).__name__
    if isinstance(exc, MemoryError):
        return "memory", name, message
    if isinstance(exc, (SystemExit, KeyboardInterrupt, GeneratorExit)):
        return "exit", name, message
    return "error", name, message


class _RequestLoader(pickle.Unpickler):
    """Requests from the test process: plain data plus references to our own objects (proxies
    it holds) and functions the tests define (sent as code, rebuilt over our globals)."""

    def __init__(self, file: io.BytesIO, host: _Host) -> None:
        super().__init__(file)
        self.host = host

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (_HANDLE_REF_MODULE, "handle_ref"):
            return self.host.handles.__getitem__
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "fn":
            _, code, name, defaults, cells = pid
            return types.FunctionType(
                marshal.loads(code), self.host.ns, name, defaults,
                tuple(types.CellType(c) for c in cells) if cells else None,
            )
        if pid[0] == "h":
            return self.host.handles[pid[1]]
        raise pickle.UnpicklingError("unknown persistent id")


_HANDLE_REF_MODULE = "acecoder.executor.sandbox.harness"


class ValueTooLarge(Exception):
    """A value that is plain data but cannot cross whole (see plain.TooLarge)."""


class _Host:
    def __init__(self, rpc_in: int, rpc_out: int, namespace: dict[str, Any]) -> None:
        self.rpc_in = rpc_in
        self.rpc_out = rpc_out
        self.ns = namespace
        self.handles: list[Any] = []
        self.pid = os.getpid()

    def encode(self, value: Any) -> tuple[Any, ...]:
        try:
            return ("value", to_plain(value))
        except NotPlain:
            self.handles.append(value)
            return ("handle", len(self.handles) - 1, type(value).__name__, callable(value),
                    _overrides_equality(value))
        except TooLarge as exc:
            raise ValueTooLarge(str(exc)) from None

    def _load_request(self, data: bytes) -> Any:
        return _RequestLoader(io.BytesIO(data), self).load()

    def names(self) -> dict[str, tuple[Any, ...]]:
        out: dict[str, tuple[Any, ...]] = {}
        for name, value in list(self.ns.items()):
            if name.startswith("__") or not isinstance(name, str):
                continue
            if isinstance(value, types.ModuleType):
                out[name] = ("module", str.__str__(value.__name__))
                continue
            try:
                entry = self.encode(value)
            except ValueTooLarge:
                entry = ("value",)
            # A plain global is fetched afresh each time a test reads it (it may change), so
            # its value need not travel now.
            out[name] = ("live",) if entry[0] == "value" else entry
        return out

    def handle(self, req: tuple[Any, ...]) -> tuple[Any, ...]:
        op = req[0]
        if op == "global":
            return self.encode(self.ns[req[2]])
        if op == "names":  # the load report again, for a test process that takes over
            return ("loaded", self.names())
        obj = self.handles[req[1]]
        if op == "call":
            args, kwargs = req[2], req[3]
            result = obj(*args, **kwargs)
            mutated = []
            for i, arg in enumerate(args):
                if type(arg) in _MUTABLE:
                    try:
                        mutated.append((i, to_plain(arg)))
                    except NotPlain:
                        pass
                    except TooLarge as exc:
                        raise ValueTooLarge(f"argument {i} after the call: {exc}") from None
            return ("result", self.encode(result), tuple(mutated))
        if op == "attr":
            return self.encode(getattr(obj, req[2]))
        if op == "item":
            return self.encode(obj[req[2]])
        if op == "len":
            return ("value", int(len(obj)))
        if op == "bool":
            return ("value", bool(obj))
        if op == "repr":
            return ("value", str.__str__(repr(obj)))
        if op == "str":
            return ("value", str.__str__(str(obj)))
        if op == "iter":
            return ("items", [self.encode(v) for v in obj])
        if op == "next":
            return self.encode(next(obj))
        if op in ("int", "float", "index"):
            convs: dict[str, Callable[[Any], Any]] = {
                "int": int, "float": float, "index": lambda v: v.__index__()}
            conv = convs[op]
            return self.encode(conv(obj))
        raise ValueError(f"unknown request {op!r}")

    def _reply(self, reply: tuple[Any, ...]) -> None:
        data = wire.dumps(reply)
        if len(data) > _REPLY_CAP:
            data = wire.dumps(("raise", "error", "ValueTooLarge",
                               f"the value is {len(data)} bytes as plain data; the limit is "
                               f"{_REPLY_CAP}"))
        if os.getpid() != self.pid:
            os._exit(0)  # a forked child never answers for the process the worker started
        wire.write_frame(self.rpc_out, data)

    def serve(self) -> None:
        requests = wire.FrameStream(self.rpc_in)
        while True:
            if os.getpid() != self.pid:
                os._exit(0)
            try:
                req = self._load_request(requests.read())
            except wire.FrameError:
                return
            try:
                reply = self.handle(req)
            except StopIteration:
                reply = ("raise", "error", "StopIteration", "")
            except BaseException as exc:  # the program's exception is a result
                reply = ("raise", *_describe_exc(exc))
            try:
                sys.stdout.flush()  # output reaches the worker before the reply does
                sys.stderr.flush()
            except BaseException:
                pass
            try:
                self._reply(reply)
            except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
                self._reply(("raise", "error", type(exc).__name__, _trim(str(exc))))


# How run_main tells the worker what Python saw (a program that exits with one of these
# itself only earns a failing verdict of another name).
EXIT_SYNTAX = 120
EXIT_MEMORY = 121
EXIT_LAUNCH = 122  # run_command could not write the source or start the command
EXIT_RAISED = 123  # a custom checker ended on an uncaught exception


def run_main(program: str, *, raised: int = 1) -> None:
    """A stdio test: run the program whole, as `__main__`, on the input at fd 0 (its own copy),
    writing to fd 1 (its own pipe); exit as Python would (0, the SystemExit code, 1 after an
    uncaught exception and its traceback, or `raised`). The worker compares the output; nothing
    here knows what is expected."""
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                 encoding="utf-8", errors="replace")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                  encoding="utf-8", errors="surrogateescape")
    code = 0
    try:  # dont_inherit: not this module's __future__ annotations (they break @dataclass)
        compiled = compile(program, "<program>", "exec", dont_inherit=True)
    except BaseException as exc:  # SyntaxError, ValueError (NUL bytes), RecursionError, ...
        _print_exc(exc)
        os._exit(EXIT_MEMORY if isinstance(exc, MemoryError) else EXIT_SYNTAX)
    try:
        exec(compiled, {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit as exc:
        code = _exit_code(exc)
    except MemoryError as exc:
        _print_exc(exc)
        code = EXIT_MEMORY
    except BaseException as exc:
        _print_exc(exc)
        code = raised
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = code or 1  # output that could not be written: not a clean run
    os._exit(code)


def run_checker(source: str, texts: list[str]) -> None:
    """A custom checker: run `source` as `__main__` with the paths of `texts` (the input, the
    program's output, the expected output: sealed in-memory files of its own) as its
    arguments, testlib's order. Its exit status is its verdict (see checkers.py)."""
    paths = []
    for i, text in enumerate(texts):
        fd = os.memfd_create(f"checker-{i}", os.MFD_ALLOW_SEALING)
        view = memoryview(text.encode("utf-8", errors="surrogateescape"))
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        paths.append(f"/proc/self/fd/{fd}")
    sys.argv = ["checker", *paths]
    run_main(source, raised=EXIT_RAISED)  # a checker that raised said nothing about the output


def run_command(argv: list[str], files: dict[str, str]) -> None:
    """A compiler, or one run of a program in another language: write `files` (the source)
    into the working directory, then become `argv` (nothing to run: exit 0). The worker reads
    the output and the exit status; nothing here knows what is expected."""
    try:
        for name, text in files.items():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            view = memoryview(text.encode("utf-8", errors="surrogateescape"))
            while view:
                view = view[os.write(fd, view):]
            os.close(fd)
        if argv:
            os.execve(argv[0], argv, dict(os.environ))
    except BaseException as exc:
        _print_exc(exc)
        os._exit(EXIT_LAUNCH)
    os._exit(0)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int) and not isinstance(exc.code, bool):
        return exc.code & 0xFF
    try:
        print(exc.code, file=sys.stderr)
    except BaseException:
        pass
    return 1


def _print_exc(exc: BaseException) -> None:
    """The traceback Python would print, without run_main's own frame."""
    try:
        import traceback

        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code is run_main.__code__:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    except BaseException:
        pass


def main(rpc_in: int, rpc_out: int, program: str, setup: str) -> None:
    """Load the program and serve until the test process hangs up. Never returns normally."""
    ns: dict[str, Any] = {"__name__": "solution", "__builtins__": builtins}
    try:  # dont_inherit: not this module's __future__ annotations (they break @dataclass)
        code = compile(program, "<program>", "exec", dont_inherit=True)
    except BaseException as exc:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError
        kind, name, message = _describe_exc(exc)
        wire.send(rpc_out, ("load_failed", "syntax" if kind == "error" else kind, name, message))
        os._exit(0)
    try:
        if setup:
            exec(compile(setup, "<setup>", "exec", dont_inherit=True), ns)
        exec(code, ns)
    except BaseException as exc:
        wire.send(rpc_out, ("load_failed", *_describe_exc(exc)))
        os._exit(0)
    sys.stdout.flush()
    host = _Host(rpc_in, rpc_out, ns)
    try:
        wire.send(rpc_out, ("loaded", host.names()))
        host.serve()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(0)
