"""SandboxFusion's /run_code protocol (executor/fusion.py): a body is checked as SandboxFusion's own
FastAPI model checks it (compared here with that model run through FastAPI), its fields become
one stdio run, and each way a run can end reads as SandboxFusion reports it. Also the batched
/acecoder/v1/run_tests body and response."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import pytest

from acecoder.errors import InvalidArgument
from acecoder.executor import fusion, languages
from acecoder.executor.config import ExecutorConfig
from acecoder.executor.service import validate
from acecoder.executor.types import ExecutionResult, ProgramStatus, Verdict
from acecoder.executor.types import TestResult as Run

CONFIG = ExecutorConfig(workers=1)
NAMES = tuple(languages.LANGUAGES)


@pytest.fixture(scope="module")
def fusion_model():  # type: ignore[no-untyped-def]
    """SandboxFusion's RunCodeRequest (sandbox/server/sandbox_api.py, Apache-2.0) behind a
    FastAPI route, its Language narrowed to the languages this executor runs: what a
    SandboxFusion server answers a body with."""
    from typing import Dict, List, Optional  # noqa: UP035 (SandboxFusion's own spelling)

    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from pydantic import BaseModel, Field

    Language = Literal[NAMES]  # type: ignore[valid-type]

    class RunCodeRequest(BaseModel):
        compile_timeout: float = Field(10)
        run_timeout: float = Field(10)
        memory_limit_MB: int = Field(-1)
        code: str = Field(...)
        stdin: Optional[str] = Field(None)  # noqa: UP045
        language: Language = Field(...)  # type: ignore[valid-type]
        files: Dict[str, Optional[str]] = Field({})  # noqa: UP006, UP045
        fetch_files: List[str] = Field([])  # noqa: UP006

    async def run_code(request):  # type: ignore[no-untyped-def]
        return request.model_dump()

    # set here, not written: this module's annotations are strings FastAPI cannot resolve
    run_code.__annotations__ = {"request": RunCodeRequest}
    app = FastAPI()
    app.post("/run_code")(run_code)
    return TestClient(app)


BODIES = [
    b"{",
    b'{"code": "x", "language": "python"',
    b"[1]",
    b'"text"',
    b"null",
    b"{}",
    b'{"code": 1, "language": "php", "run_timeout": "x", "memory_limit_MB": 1.5, "stdin": 3, '
    b'"files": [], "fetch_files": "a"}',
    b'{"code": null, "language": null, "compile_timeout": null, "memory_limit_MB": "big"}',
    b'{"code": "x", "language": "python", "memory_limit_MB": [], "run_timeout": {}}',
    b'{"code": "x", "language": "python", "files": {"a": 3}, "fetch_files": [1, "b"]}',
    b'{"code": "x", "language": "cpp", "run_timeout": "5", "memory_limit_MB": "64", '
    b'"compile_timeout": true, "stdin": null, "files": {"skipped": null}}',
    b'{"code": "print(1)", "language": "python", "memory_limit_MB": 2.0, "run_timeout": 3}',
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_a_body_is_checked_as_sandboxfusion_checks_it(fusion_model, body: bytes) -> None:  # type: ignore[no-untyped-def]
    theirs = fusion_model.post("/run_code", content=body,
                               headers={"content-type": "application/json"})
    try:
        mine = fusion.parse_run_code(fusion.decode_body(body, "application/json"))
    except fusion.RequestInvalid as exc:
        assert theirs.status_code == 422
        assert exc.errors == theirs.json()["detail"]
        assert exc.grpc_code == "INVALID_ARGUMENT" and exc.http_status == 422
    else:
        assert theirs.status_code == 200
        got = theirs.json()
        assert {k: getattr(mine, k) for k in got} == got


def test_the_content_type_decides_as_fastapi_did() -> None:
    body = b'{"code": "x", "language": "python"}'
    for kind in (None, "application/json", "application/json; charset=utf-8",
                 "application/vnd.api+json"):
        assert fusion.decode_body(body, kind) == {"code": "x", "language": "python"}
    # a form or text body reaches the model as text, which it refuses
    text = fusion.decode_body(body, "application/x-www-form-urlencoded")
    with pytest.raises(fusion.RequestInvalid) as err:
        fusion.parse_run_code(text)
    assert err.value.errors[0]["type"] == "model_attributes_type"
    with pytest.raises(fusion.RequestInvalid) as err:
        fusion.decode_body(b"\xff\xfe{", None)
    assert err.value.errors[0]["type"] == "json_invalid"


def test_files_are_refused_never_ignored() -> None:
    base = {"code": "x", "language": "python"}
    with pytest.raises(fusion.RequestInvalid) as err:
        fusion.parse_run_code({**base, "files": {"data.txt": "aGk=", "skipped": None}})
    (e,) = err.value.errors
    assert e["loc"] == ["body", "files"] and e["input"] == ["data.txt"]
    assert "does not place files" in e["msg"]
    with pytest.raises(fusion.RequestInvalid) as err:
        fusion.parse_run_code({**base, "fetch_files": ["out.txt"]})
    assert err.value.errors[0]["loc"] == ["body", "fetch_files"]
    # what SandboxFusion itself skips is fine: a null content, an empty list
    run = fusion.parse_run_code({**base, "files": {"x": None}, "fetch_files": []})
    assert run.files == {"x": None} and run.fetch_files == []


def test_a_run_is_one_stdio_test_that_keeps_all_its_output() -> None:
    run = fusion.parse_run_code({"code": "print(input())", "language": "python", "stdin": "hi",
                                 "run_timeout": 2, "memory_limit_MB": 256,
                                 "compile_timeout": 500})
    fields = fusion.run_code_fields(run, CONFIG)
    assert fields["stdio"] == [("hi", "")] and fields["tests"] == []
    assert fields["compile_timeout"] is None  # python: no compiler reads it (500 would be refused)
    req = validate(CONFIG, **fields)
    assert (req.kind, req.checker, req.timeout, req.memory_mb) == ("stdio", "exact", 2.0, 256)
    assert req.capture_bytes == req.output_limit == fusion.OUTPUT_LIMIT
    cpp = fusion.run_code_fields(fusion.parse_run_code(
        {"code": "int main(){}", "language": "cpp", "memory_limit_MB": -1}), CONFIG)
    assert cpp["compile_timeout"] == 10.0 and cpp["memory_mb"] is None
    assert cpp["stdio"] == [("", "")]
    small = ExecutorConfig(workers=1, max_output_limit=1 << 20)
    assert fusion.run_code_fields(run, small)["capture_bytes"] == 1 << 20


def test_validate_messages_speak_the_request_s_names() -> None:
    t = fusion.in_request_terms
    assert t("timeout_seconds 100.0 exceeds the limit") == "run_timeout 100.0 exceeds the limit"
    assert t("compile_timeout_seconds must be in (0, 60]") == "compile_timeout must be in (0, 60]"
    assert t("memory_limit_mb must be between 16") == "memory_limit_MB must be between 16"
    assert t("stdio_tests[0].input is 9 bytes") == "stdin is 9 bytes"
    assert t("program is 9 bytes") == "code is 9 bytes"
    assert t("stdio_tests[3].output is 9 bytes", run_code=False) == "tests[3].output is 9 bytes"


# -- responses -----------------------------------------------------------------------------------

def result(verdict: Verdict = Verdict.PASSED, *, code: int = 0, error_type: str = "",
           status: ProgramStatus = ProgramStatus.OK, detail: str = "", message: str = "",
           stdout: str = "out\n", tests: int = 1) -> ExecutionResult:
    t = Run(verdict=verdict, duration=0.25, exit_code=code, error_type=error_type,
                   error_message=message)
    return ExecutionResult(request_id="r", status=status, status_detail=detail, tests=(t,) * tests,
                           stdout=stdout, stderr="err\n", compile_duration=0.5)


KEYS = {"status", "message", "compile_result", "run_result", "executor_pod_name", "files"}
RUN_KEYS = {"status", "execution_time", "return_code", "stdout", "stderr"}


@pytest.mark.parametrize(("r", "status", "run_status", "code"), [
    (result(Verdict.PASSED), "Success", "Finished", 0),
    (result(Verdict.FAILED), "Success", "Finished", 0),  # expected "" only stands in
    (result(Verdict.TIMEOUT, code=-9), "Failed", "TimeLimitExceeded", None),
    (result(Verdict.ERROR, code=3, error_type="ExitStatus"), "Failed", "Finished", 3),
    (result(Verdict.CRASHED, code=-11), "Failed", "Finished", -11),
    (result(Verdict.ERROR, code=120, error_type="SyntaxError"), "Failed", "Finished", 1),
    (result(Verdict.MEMORY, code=121, error_type="MemoryError"), "Failed", "Finished", 1),
    (result(Verdict.ERROR, error_type="SyntaxError"), "Failed", "Finished", 1),
    (result(Verdict.ERROR, code=0, error_type="Odd"), "Failed", "Finished", 1),
], ids=["passed", "other-output", "timeout", "exit-3", "signal", "syntax", "memory",
        "syntax-no-code", "error-exit-0"])
def test_each_end_of_a_python_run(r: ExecutionResult, status: str, run_status: str,
                                  code: int | None) -> None:
    out = fusion.run_code_response(r, "python")
    assert set(out) == KEYS and set(out["run_result"]) == RUN_KEYS
    assert out["status"] == status and out["message"] == "" and out["compile_result"] is None
    run = out["run_result"]
    assert (run["status"], run["return_code"]) == (run_status, code)
    assert (run["stdout"], run["stderr"], run["execution_time"]) == ("out\n", "err\n", 0.25)
    assert out["files"] == {} and out["executor_pod_name"] is None
    json.dumps(out, allow_nan=False)


def test_output_past_the_limit_stops_the_program_and_says_so() -> None:
    for code in (0, -9):
        out = fusion.run_code_response(result(Verdict.ERROR, code=code,
                                              error_type="OutputLimitExceeded"), "python")
        assert out["status"] == "Failed" and out["run_result"]["return_code"] == -9
        assert "more than" in out["message"]


def test_a_compiled_language_reports_its_compiler() -> None:
    ok = fusion.run_code_response(result(Verdict.PASSED), "cpp")
    assert ok["status"] == "Success"
    assert ok["compile_result"] == {"status": "Finished", "execution_time": 0.5, "return_code": 0,
                                    "stdout": "", "stderr": ""}
    assert fusion.run_code_response(result(Verdict.PASSED), "nodejs")["compile_result"] is None
    cases = [("the compiler exited with status 4:\nmain.cpp:1: error", "Finished", 4,
              "main.cpp:1: error"),
             ("the compiler ran longer than 10.0s", "TimeLimitExceeded", None,
              "the compiler ran longer than 10.0s"),
             ("the compiler was killed by SIGKILL:\nbye", "Finished", -9, "bye"),
             ("the compiler was killed by SIGSEGV", "Finished", -11, "the compiler was killed "
              "by SIGSEGV"),
             ("the compiler wrote more than 1048576 bytes:\nspam", "Finished", 1, "spam")]
    for detail, status, code, stderr in cases:
        r = result(Verdict.ERROR, error_type="CompileError", status=ProgramStatus.COMPILE_ERROR,
                   detail=detail)
        out = fusion.run_code_response(r, "cpp")
        assert out["status"] == "Failed" and out["run_result"] is None, detail
        assert out["compile_result"] == {"status": status, "execution_time": 0.5,
                                         "return_code": code, "stdout": "", "stderr": stderr}


def test_a_failure_of_the_sandbox_is_a_sandbox_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_POD_NAME", "executor-7")
    lost = result(Verdict.CRASHED, code=0, message="the sandbox worker died twice")
    out = fusion.run_code_response(lost, "python")
    assert out == {"status": "SandboxError", "message": "the sandbox worker died twice",
                   "compile_result": None, "run_result": None,
                   "executor_pod_name": "executor-7", "files": {}}
    none = fusion.run_code_response(result(tests=0, detail="nothing ran"), "python")
    assert none["status"] == "SandboxError" and none["message"] == "nothing ran"
    assert fusion.run_code_response(result(tests=0), "python")["message"]
    assert fusion.run_code_response(result(), "python")["executor_pod_name"] == "executor-7"


# -- the batched route -------------------------------------------------------------------------

def test_run_tests_takes_tests_as_people_have_them() -> None:
    fields = fusion.run_tests_fields({
        "code": "print(input())", "tests": [{"input": "1", "output": "1"}], "checker": "lines",
        "run_timeout": 2, "compile_timeout": 5.5, "memory_limit_MB": -1,
        "stop_on_first_failure": True, "request_id": "mine", "language": "python"})
    assert fields["stdio"] == [("1", "1")] and fields["tests"] == []
    assert fields["memory_mb"] is None and fields["timeout"] == 2
    req = validate(CONFIG, **fields)
    assert (req.checker, req.stop_on_first_failure, req.request_id) == ("lines", True, "mine")
    truth = json.dumps({"inputs": ["1", "2"], "outputs": ["1", "2"]})  # as verl carries it
    assert fusion.run_tests_fields({"code": "", "tests": truth})["stdio"] == [("1", "1"),
                                                                             ("2", "2")]
    asserts = fusion.run_tests_fields({"code": "x = 1", "tests": ["assert x == 1"],
                                       "memory_limit_MB": 64})
    assert asserts["tests"] == ["assert x == 1"] and asserts["stdio"] == []
    assert asserts["memory_mb"] == 64
    # call tests, named in the body or by the ground truth itself (APPS, TACO)
    calls = fusion.run_tests_fields({"code": "def f(a, b):\n    return [a, b]\n",
                                     "fn_name": "f", "tests": [{"input": [1, "x"],
                                                                "output": [1, "x"]}]})
    assert calls["fn_name"] == "f" and calls["calls"] == [('[1, "x"]', '[1, "x"]')]
    assert "'f'" in validate(CONFIG, **calls).tests[0]  # one call of f, checked on our side
    named = fusion.run_tests_fields({"code": "", "tests": {"fn_name": "g", "inputs": [[2]],
                                                           "outputs": [4]}})
    assert (named["fn_name"], named["calls"]) == ("g", [("[2]", "4")])


@pytest.mark.parametrize(("body", "message"), [
    ([], "must be a JSON object"),
    ({"code": "", "tests": [], "stdin": ""}, "unknown field(s) stdin"),
    ({"tests": []}, "'code' must be the program"),
    ({"code": ""}, "'tests' is missing"),
    ({"code": "", "tests": 3}, "tests: tests must be a list"),
    ({"code": "", "tests": [], "run_timeout": "1"}, "'run_timeout' has the wrong type (str)"),
    ({"code": "", "tests": [], "memory_limit_MB": True}, "'memory_limit_MB' has the wrong type"),
    ({"code": "", "tests": [], "fn_name": 3}, "'fn_name' has the wrong type (int)"),
    ({"code": "", "fn_name": "f", "tests": [{"input": "1", "output": 1}]},
     "tests: tests[0] must be a call test"),
])
def test_run_tests_refuses_what_it_cannot_read(body: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        fusion.run_tests_fields(body)


def test_run_tests_body_is_json_and_its_answer_the_whole_result() -> None:
    assert fusion.json_body(b'{"a": 1}') == {"a": 1}
    with pytest.raises(InvalidArgument, match="not JSON"):
        fusion.json_body(b"{")
    r = ExecutionResult(request_id="r", status=ProgramStatus.OK, tests=(
        Run(verdict=Verdict.PASSED, duration=0.1, cpu_seconds=0.05, peak_memory_kb=9),
        Run(verdict=Verdict.FAILED, error_message="differs")), jail="none",
        flags=("EXITED_EARLY",))
    out = fusion.run_tests_response(r)
    assert out["passed"] == 1 and out["pass_rate"] == 0.5 and out["all_passed"] is False
    assert out["tests"][0] == {"verdict": "PASSED", "duration": 0.1, "cpu_seconds": 0.05,
                               "peak_memory_kb": 9, "exit_code": 0, "error_type": "",
                               "error_message": ""}
    assert out["tests"][1]["error_message"] == "differs"
    assert out["flags"] == ["EXITED_EARLY"] and out["jail"] == "none" and out["status"] == "OK"
