"""SandboxFusion's `/run_code` protocol, and the executor's own batched `/acecoder/v1/run_tests`:
JSON bodies parsed into `service.validate` fields, results turned into response bodies. No web
framework here (executor/http.py serves these).

A /run_code call is one stdio run: the program runs whole on `stdin` under the request's limits,
in the same jail as every gRPC request, and the response reports how it ended the way
SandboxFusion does (`run_result.status` Finished with the exit status, TimeLimitExceeded, or a
`SandboxError` when the sandbox itself failed). Its request is checked as SandboxFusion's FastAPI
model checks it (pydantic's lax types): a body that does not fit is HTTP 422 with the same
`{"detail": [{"type", "loc", "msg", "input"}]}` list.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acecoder.errors import InvalidArgument

from . import languages
from .config import ExecutorConfig
from .convert import split_tests
from .types import ExecutionResult, ProgramStatus, TestResult, Verdict, parse_ground_truth

OUTPUT_LIMIT = 16 << 20
"""What a /run_code program may write to stdout, bytes; all of it comes back (SandboxFusion
returns a program's whole output, and verl compares it itself). More stops the program."""


class RequestInvalid(InvalidArgument):
    """The body does not fit SandboxFusion's request model: HTTP 422 with pydantic's errors."""

    http_status = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                   for e in errors))
        self.errors = errors


@dataclass(frozen=True, kw_only=True)
class RunCode:
    """SandboxFusion's RunCodeRequest (sandbox/server/sandbox_api.py), checked."""

    code: str
    language: str
    compile_timeout: float = 10.0
    run_timeout: float = 10.0
    memory_limit_MB: int = -1
    """-1 (or any value <= 0): no limit of the request's own (the executor's default)."""
    stdin: str | None = None
    files: dict[str, str | None] = field(default_factory=dict)
    fetch_files: list[str] = field(default_factory=list)


# -- pydantic's lax types, as far as SandboxFusion's model uses them --------------------------

_MISSING = object()


def _error(kind: str, loc: tuple[Any, ...], msg: str, value: Any, **ctx: Any) -> dict[str, Any]:
    out = {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}
    if ctx:
        out["ctx"] = ctx
    return out


def _float(value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> Any:
    if isinstance(value, (int, float)):  # bool too, as pydantic's lax mode takes it
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            errors.append(_error("float_parsing", loc, "Input should be a valid number, unable "
                                 "to parse string as a number", value))
            return None
    errors.append(_error("float_type", loc, "Input should be a valid number", value))
    return None


def _int(value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> Any:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        errors.append(_error("int_from_float", loc, "Input should be a valid integer, got a "
                             "number with a fractional part", value))
        return None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            errors.append(_error("int_parsing", loc, "Input should be a valid integer, unable "
                                 "to parse string as an integer", value))
            return None
    errors.append(_error("int_type", loc, "Input should be a valid integer", value))
    return None


def _str(value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> Any:
    if isinstance(value, str):
        return value
    errors.append(_error("string_type", loc, "Input should be a valid string", value))
    return None


def _literal(value: Any, loc: tuple[Any, ...], errors: list[dict[str, Any]],
             choices: tuple[str, ...]) -> Any:
    if value in choices:
        return value
    quoted = [f"'{c}'" for c in choices]
    expected = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
    errors.append(_error("literal_error", loc, f"Input should be {expected}", value,
                         expected=expected))
    return None


def decode_body(raw: bytes, content_type: str | None) -> Any:
    """The body as FastAPI (the version SandboxFusion pins) reads it for a model: JSON when the
    content type is absent or JSON, else the raw text (which then fails the model)."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind and not (kind == "application/json" or
                     (kind.startswith("application/") and kind.endswith("+json"))):
        return raw.decode("utf-8", errors="replace")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestInvalid([_error("json_invalid", (exc.pos,), "JSON decode error", {},
                                     error=exc.msg)]) from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, or nested past recursion
        raise RequestInvalid([_error("json_invalid", (0,), "JSON decode error", {},
                                     error=str(exc)[:200])]) from None


def json_body(raw: bytes) -> Any:
    """A /acecoder/v1/run_tests body: JSON, whatever its content type says."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidArgument("the body is not JSON: send {\"code\": ..., \"tests\": "
                              "[{\"input\": ..., \"output\": ...}, ...]}") from None


def parse_run_code(body: Any) -> RunCode:
    """A RunCode from a decoded body, or RequestInvalid with pydantic's errors (in the model's
    field order, as pydantic reports them)."""
    if body is None:
        raise RequestInvalid([_error("missing", (), "Field required", None)])
    if not isinstance(body, dict):
        raise RequestInvalid([_error("model_attributes_type", (), "Input should be a valid "
                                     "dictionary or object to extract fields from", body)])
    errors: list[dict[str, Any]] = []
    got: dict[str, Any] = {}

    def take(name: str, check: Any, *args: Any, required: bool = False) -> None:
        value = body.get(name, _MISSING)
        if value is _MISSING:
            if required:
                errors.append(_error("missing", (name,), "Field required", body))
            return
        got[name] = check(value, (name,), errors, *args)

    take("compile_timeout", _float)
    take("run_timeout", _float)
    take("memory_limit_MB", _int)
    take("code", _str, required=True)
    if body.get("stdin") is not None:
        take("stdin", _str)
    take("language", _literal, tuple(languages.LANGUAGES), required=True)
    files = body.get("files", {})
    if isinstance(files, dict):
        for name, content in files.items():
            if content is not None:
                _str(content, ("files", name), errors)
        got["files"] = files
    else:
        errors.append(_error("dict_type", ("files",), "Input should be a valid dictionary",
                             files))
    fetch = body.get("fetch_files", [])
    if isinstance(fetch, list):
        for i, name in enumerate(fetch):
            _str(name, ("fetch_files", i), errors)
        got["fetch_files"] = fetch
    else:
        errors.append(_error("list_type", ("fetch_files",), "Input should be a valid list",
                             fetch))
    if not errors:
        _no_files(got, errors)
    if errors:
        raise RequestInvalid(errors)
    return RunCode(**got)


def _no_files(got: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    """Files are refused, never ignored: the jail gives a program an empty directory of its own
    and hands nothing back, so a program that needs a file, or a caller that wants one back,
    would get a silently wrong answer. (SandboxFusion itself skips entries whose content is
    null.)"""
    placed = sorted(k for k, v in got.get("files", {}).items() if v is not None)
    if placed:
        errors.append(_error(
            "value_error", ("files",), "Value error, this sandbox (acecoder) does not place "
            "files beside the program: send the data on stdin or inside the code", placed,
            error="files are not supported"))
    if got.get("fetch_files"):
        errors.append(_error(
            "value_error", ("fetch_files",), "Value error, this sandbox (acecoder) does not "
            "hand back files a program writes: have it print them", got["fetch_files"],
            error="fetch_files is not supported"))


def run_code_fields(run: RunCode, config: ExecutorConfig) -> dict[str, Any]:
    """`service.validate` keywords for one stdio run of `run` (its output is judged by the
    caller: the expected output "" only stands in for one)."""
    compiled = bool(languages.LANGUAGES[run.language].compile)
    limit = min(OUTPUT_LIMIT, config.max_output_limit)
    return {
        "program": run.code, "tests": [], "stdio": [(run.stdin or "", "")], "checker": "exact",
        "language": run.language, "timeout": run.run_timeout,
        "memory_mb": run.memory_limit_MB if run.memory_limit_MB > 0 else None,
        # SandboxFusion reads compile_timeout only where there is a compiler
        "compile_timeout": run.compile_timeout if compiled else None,
        "output_limit": limit, "capture_bytes": limit,
    }


_NAMES = ((r"\bcompile_timeout_seconds\b", "compile_timeout"),
          (r"\btimeout_seconds\b", "run_timeout"), (r"\bmemory_limit_mb\b", "memory_limit_MB"),
          (r"\bstdio_tests\[0\]\.input\b", "stdin"), (r"^program\b", "code"))


def in_request_terms(message: str, *, run_code: bool = True) -> str:
    """A `service.validate` message with the field names of the HTTP request it came from
    (run_timeout, not timeout_seconds); stdio tests are /run_tests' `tests`."""
    for pattern, name in _NAMES if run_code else _NAMES[:3] + _NAMES[4:]:
        message = re.sub(pattern, name, message)
    return re.sub(r"\bstdio_tests\[", "tests[", message)


# -- responses ---------------------------------------------------------------------------------

def sandbox_error(message: str) -> dict[str, Any]:
    """A RunCodeResponse for a run the sandbox could not carry out."""
    return {"status": "SandboxError", "message": message, "compile_result": None,
            "run_result": None, "executor_pod_name": _pod(), "files": {}}


def _pod() -> str | None:
    return os.environ.get("MY_POD_NAME")  # SandboxFusion's name for it (the downward API)


def _command(status: str, seconds: float | None, code: int | None, stdout: str,
             stderr: str) -> dict[str, Any]:
    return {"status": status, "execution_time": seconds, "return_code": code, "stdout": stdout,
            "stderr": stderr}


def _compile_result(result: ExecutionResult) -> dict[str, Any]:
    """SandboxFusion's compile_result of a compiled language's program; the compiler's output
    (stdout and stderr, merged) is its stderr."""
    seconds = result.compile_duration
    if result.status is not ProgramStatus.COMPILE_ERROR:
        return _command("Finished", seconds, 0, "", "")
    why, _, text = result.status_detail.partition(":\n")
    text = text or why
    if "ran longer than" in why:
        return _command("TimeLimitExceeded", seconds, None, "", text)
    code = 1
    if m := re.search(r"exited with status (\d+)", why):
        code = int(m.group(1))
    elif m := re.search(r"killed by (SIG\w+)", why):
        code = -int(getattr(signal, m.group(1), signal.SIGKILL))
    return _command("Finished", seconds, code, "", text)


def _lost(t: TestResult) -> bool:
    """The sandbox itself failed the run (its worker died under it twice, or did not answer):
    a crash of the program's own ends in a signal, a negative exit code."""
    return t.verdict is Verdict.CRASHED and t.exit_code == 0


def run_code_response(result: ExecutionResult, language: str) -> dict[str, Any]:
    """SandboxFusion's RunCodeResponse of a /run_code run: Success when the program exited 0
    within its time, Failed when it did not compile, ran out of time or exited non-zero (a
    signal is its negative number, an out-of-memory Python program exits 1 as Python does),
    SandboxError when the sandbox failed."""
    compiled = bool(languages.LANGUAGES[language].compile)
    compile_result = _compile_result(result) if compiled else None
    if result.status is ProgramStatus.COMPILE_ERROR:
        return {"status": "Failed", "message": "", "compile_result": compile_result,
                "run_result": None, "executor_pod_name": _pod(), "files": {}}
    if not result.tests:
        return sandbox_error(result.status_detail or "the sandbox returned no run")
    t = result.tests[0]
    if _lost(t):
        return sandbox_error(t.error_message or result.status_detail)
    message = ""
    if t.verdict is Verdict.TIMEOUT:
        run = _command("TimeLimitExceeded", t.duration, None, result.stdout, result.stderr)
    else:
        code = t.exit_code
        if language == "python" and t.error_type in ("SyntaxError", "MemoryError"):
            code = 1  # what python itself exits with; the sandbox's own code says which
        elif t.error_type == "OutputLimitExceeded":
            code = code or -int(signal.SIGKILL)
            message = f"the program wrote more than {OUTPUT_LIMIT} bytes to stdout and was stopped"
        elif t.verdict not in (Verdict.PASSED, Verdict.FAILED) and code == 0:
            code = 1  # a failing verdict never reads as a clean exit
        run = _command("Finished", t.duration, code, result.stdout, result.stderr)
    ok = run["status"] == "Finished" and run["return_code"] == 0
    return {"status": "Success" if ok else "Failed", "message": message,
            "compile_result": compile_result, "run_result": run,
            "executor_pod_name": _pod(), "files": {}}


# -- the batched route: one program, many tests -------------------------------------------------

RUN_TESTS_FIELDS = ("code", "language", "tests", "fn_name", "checker", "run_timeout",
                    "compile_timeout", "memory_limit_MB", "stop_on_first_failure", "request_id")


def run_tests_fields(body: Any) -> dict[str, Any]:
    """`service.validate` keywords of a /acecoder/v1/run_tests body:
    {"code", "language"?, "tests", "fn_name"?, "checker"?, "run_timeout"?, "compile_timeout"?,
    "memory_limit_MB"?, "stop_on_first_failure"?, "request_id"?}, where `tests` is a list of
    {"input", "output"} stdio tests (or of Python test statements), ground truth as verl
    carries it, {"inputs": [...], "outputs": [...]} (an object or its JSON string), or, with
    `fn_name` (or the ground truth's own), call tests: each input the call's arguments."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("the body must be a JSON object: {\"code\": ..., \"tests\": "
                              "[{\"input\": ..., \"output\": ...}, ...]}")
    unknown = sorted(set(body) - set(RUN_TESTS_FIELDS))
    if unknown:
        raise InvalidArgument(f"unknown field(s) {', '.join(unknown)}: the fields are "
                              f"{', '.join(RUN_TESTS_FIELDS)}")
    if not isinstance(body.get("code"), str):
        raise InvalidArgument("'code' must be the program, a string")
    if "tests" not in body:
        raise InvalidArgument("'tests' is missing: send [{\"input\": ..., \"output\": ...}]")
    named = _typed(body, "fn_name", str, "")
    try:
        tests = parse_ground_truth(body["tests"], named)
        statements, stdio, calls, fn_name = split_tests(tests)
    except ValueError as exc:
        raise InvalidArgument(f"tests: {exc}") from None
    fields: dict[str, Any] = {
        "program": body["code"], "tests": statements, "stdio": stdio, "calls": calls,
        "fn_name": fn_name,
        "language": _typed(body, "language", str, ""),
        "checker": _typed(body, "checker", str, ""),
        "timeout": _typed(body, "run_timeout", (int, float), None),
        "compile_timeout": _typed(body, "compile_timeout", (int, float), None),
        "memory_mb": _typed(body, "memory_limit_MB", int, None),
        "stop_on_first_failure": _typed(body, "stop_on_first_failure", bool, False),
        "request_id": _typed(body, "request_id", str, ""),
    }
    if fields["memory_mb"] is not None and fields["memory_mb"] <= 0:
        fields["memory_mb"] = None  # as /run_code: -1 is the executor's default
    return fields


def _typed(body: Mapping[str, Any], name: str, kind: Any, default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidArgument(f"'{name}' has the wrong type ({type(value).__name__})")
    return value


def run_tests_response(result: ExecutionResult) -> dict[str, Any]:
    """The result as JSON, field for field as the gRPC ExecuteResponse carries it."""
    return {
        "request_id": result.request_id, "status": result.status.value,
        "status_detail": result.status_detail, "passed": result.passed,
        "pass_rate": result.pass_rate, "all_passed": result.all_passed,
        "tests": [{"verdict": t.verdict.value, "duration": t.duration,
                   "cpu_seconds": t.cpu_seconds, "peak_memory_kb": t.peak_memory_kb,
                   "exit_code": t.exit_code, "error_type": t.error_type,
                   "error_message": t.error_message} for t in result.tests],
        "stdout": result.stdout, "stderr": result.stderr,
        "stdout_truncated": result.stdout_truncated, "stderr_truncated": result.stderr_truncated,
        "compile_duration": result.compile_duration, "duration": result.duration,
        "flags": list(result.flags), "jail": result.jail,
    }
