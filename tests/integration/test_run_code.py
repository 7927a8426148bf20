"""SandboxFusion's POST /run_code on a real `acecoder serve executor --http-port 0` over loopback,
called with httpx: the response field for field, each way a run ends, stdin, the whole stdout,
bad requests, tokens and TLS, metrics, the drain; the batched /acecoder/v1/run_tests; and verl's
own SandboxFusion reward code pointed at it, scoring as the gRPC path does."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from acecoder.clients import ExecutorClient
from acecoder.datasets import (
    CallProblem,
    Problem,
    broken,
    broken_call,
    broken_stdio,
    load_calls,
    load_stdio,
)
from acecoder.executor import languages
from acecoder.serving import spawn_server
from tests.pki import CA, Issued

TOKEN = "verl-token-0123456789abcdef01"


@dataclass
class HttpExecutor:
    proc: subprocess.Popen[str]
    target: str
    url: str
    metrics: str


def start(*extra: str, workers: int = 2, scheme: str = "http") -> HttpExecutor:
    cmd = [sys.executable, "-m", "acecoder.cli", "serve", "executor", "--port", "0",
           "--http-port", "0", "--workers", str(workers), "--metrics-port", "0", *extra]
    proc, m = spawn_server(cmd, r"listening on (\S+) .*http on :(\d+), metrics on :(\d+)",
                           "the executor")
    return HttpExecutor(proc, m.group(1), f"{scheme}://127.0.0.1:{m.group(2)}",
                        f"http://127.0.0.1:{m.group(3)}/metrics")


def stop(ex: HttpExecutor) -> int:
    ex.proc.send_signal(signal.SIGTERM)
    return ex.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def ex() -> Iterator[HttpExecutor]:
    server = start()
    yield server
    assert stop(server) == 0


def run(ex: HttpExecutor, code: str, language: str = "python", **fields: object) -> dict:  # type: ignore[type-arg]
    r = httpx.post(ex.url + "/run_code", json={"code": code, "language": language, **fields},
                   timeout=120)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_run_answers_field_for_field(ex: HttpExecutor) -> None:
    out = run(ex, "import sys\nname = input()\nprint('hello', name)\nprint('note', "
                  "file=sys.stderr)\n", stdin="verl\n", run_timeout=5, memory_limit_MB=256,
              compile_timeout=10, files={}, fetch_files=[])
    assert set(out) == {"status", "message", "compile_result", "run_result",
                        "executor_pod_name", "files"}
    assert (out["status"], out["message"], out["compile_result"], out["files"]) == \
        ("Success", "", None, {})
    run_result = out["run_result"]
    assert set(run_result) == {"status", "execution_time", "return_code", "stdout", "stderr"}
    assert (run_result["status"], run_result["return_code"]) == ("Finished", 0)
    assert (run_result["stdout"], run_result["stderr"]) == ("hello verl\n", "note\n")
    assert 0 < run_result["execution_time"] < 5
    assert httpx.get(ex.url + "/v1/ping").json() == "pong"
    assert httpx.get(ex.url + "/health").json() == {"status": "SERVING"}


@pytest.mark.parametrize(("code", "fields", "status", "code_or_tle", "output"), [
    ("import time\nprint('started', flush=True)\ntime.sleep(5)\n", {"run_timeout": 0.5},
     "Failed", "TimeLimitExceeded", "started\n"),
    ("while True:\n    pass\n", {"run_timeout": 0.5}, "Failed", "TimeLimitExceeded", ""),
    ("print('partial')\nraise SystemExit(3)\n", {}, "Failed", 3, "partial\n"),
    ("raise ValueError('no')\n", {}, "Failed", 1, ""),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", {}, "Failed", -11, ""),
    ("x = bytearray(1 << 30)\n", {"memory_limit_MB": 128}, "Failed", 1, ""),
    ("def broken(:\n", {}, "Failed", 1, ""),
    # judged by how it exited and what it printed, as SandboxFusion judges it: a program that
    # exits 0 before a failing check has "passed" (verl's own fn_name wrapper relies on it)
    ("import sys\nprint('ok')\nsys.exit(0)\nassert False\n", {}, "Success", 0, "ok\n"),
], ids=["sleeps", "spins", "exit-3", "raises", "segfault", "memory", "syntax", "exits-0-early"])
def test_each_end_of_a_run(ex: HttpExecutor, code: str, fields: dict[str, object], status: str,
                           code_or_tle: int | str, output: str) -> None:
    out = run(ex, code, **fields)
    assert out["status"] == status
    r = out["run_result"]
    if code_or_tle == "TimeLimitExceeded":
        assert (r["status"], r["return_code"]) == ("TimeLimitExceeded", None)
        assert r["execution_time"] >= 0.5
    else:
        assert (r["status"], r["return_code"]) == ("Finished", code_or_tle)
    assert r["stdout"] == output
    if code_or_tle == 1:  # Python's own report of what went wrong
        assert "Error" in r["stderr"]


def test_the_whole_output_comes_back_up_to_its_limit(ex: HttpExecutor) -> None:
    # far past the gRPC results' 64 KiB: verl compares the whole output itself
    big = run(ex, "import sys\nfor i in range(300000):\n    sys.stdout.write(f'{i}\\n')\n")
    lines = big["run_result"]["stdout"].splitlines()
    assert big["status"] == "Success" and len(lines) == 300000 and lines[-1] == "299999"
    echo = run(ex, "import sys\nsys.stdout.write(sys.stdin.read())\n", stdin="x" * (1 << 20))
    assert echo["run_result"]["stdout"] == "x" * (1 << 20)
    flood = run(ex, "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n")
    assert flood["status"] == "Failed" and "more than 16777216 bytes" in flood["message"]
    assert flood["run_result"]["return_code"] == -9


HELLO = {
    "c": "#include <stdio.h>\nint main(void){int a,b;scanf(\"%d %d\",&a,&b);"
         "printf(\"%d\\n\",a+b);return 0;}\n",
    "cpp": "#include <iostream>\nint main(){int a,b;std::cin>>a>>b;std::cout<<a+b<<\"\\n\";}\n",
    "java": "import java.util.*;\npublic class Main{public static void main(String[] x){"
            "Scanner s=new Scanner(System.in);System.out.println(s.nextInt()+s.nextInt());}}\n",
    "nodejs": "const [a,b]=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(Number);"
              "console.log(a+b);\n",
    "rust": "use std::io::Read;\nfn main(){let mut s=String::new();"
            "std::io::stdin().read_to_string(&mut s).unwrap();"
            "let v:Vec<i64>=s.split_whitespace().map(|x|x.parse().unwrap()).collect();"
            "println!(\"{}\",v[0]+v[1]);}\n",
    "go": "package main\nimport \"fmt\"\nfunc main(){var a,b int\nfmt.Scan(&a,&b)\n"
          "fmt.Println(a+b)}\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("language", list(HELLO))
def test_each_language_by_sandboxfusion_s_name(ex: HttpExecutor, language: str) -> None:
    assert languages.toolchain(language) is not None, "`make sysdeps` installs it"
    out = run(ex, HELLO[language], language, stdin="20 22\n", compile_timeout=60)
    assert out["status"] == "Success", out
    assert out["run_result"]["stdout"] == "42\n"
    if languages.LANGUAGES[language].compile:
        c = out["compile_result"]
        assert (c["status"], c["return_code"]) == ("Finished", 0) and c["execution_time"] > 0
    else:
        assert out["compile_result"] is None
    broken = run(ex, HELLO[language] + "\n@@@ not a program\n", language, stdin="1 2",
                 compile_timeout=60)
    assert broken["status"] == "Failed"


def test_a_compile_error_is_sandboxfusion_s(ex: HttpExecutor) -> None:
    out = run(ex, "int main() { return undeclared; }\n", "cpp")
    assert (out["status"], out["run_result"]) == ("Failed", None)
    c = out["compile_result"]
    assert c["status"] == "Finished" and c["return_code"] == 1
    assert "undeclared" in c["stderr"] and "error" in c["stderr"]


def test_bad_requests_are_answered_as_sandboxfusion_answers_them(ex: HttpExecutor) -> None:
    post = lambda body, **kw: httpx.post(ex.url + "/run_code", timeout=30, **kw,  # noqa: E731
                                         content=body if isinstance(body, bytes) else None,
                                         json=None if isinstance(body, bytes) else body)
    r = post({"language": "python"})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"type": "missing", "loc": ["body", "code"],
                                   "msg": "Field required", "input": {"language": "python"}}]
    r = post({"code": "print(1)", "language": "cobol"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "literal_error"
    r = post(b'{"code": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = post({"code": "print(open('data.txt').read())", "language": "python",
              "files": {"data.txt": "aGVsbG8="}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "files"]
    r = post({"code": "print(1)", "language": "python", "run_timeout": 3600})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT"
    assert "run_timeout" in r.json()["detail"]
    r = post({"code": "print(1)", "language": "python", "memory_limit_MB": 1})
    assert r.status_code == 400 and "memory_limit_MB" in r.json()["detail"]
    assert httpx.get(ex.url + "/nothing/here").json() == {"detail": "Not Found"}


def test_run_tests_runs_one_program_on_many_tests(ex: HttpExecutor) -> None:
    body = {"code": "print(sum(map(int, input().split())))",
            "tests": {"inputs": ["1 2", "3 4", "5 6"], "outputs": ["3", "7", "12"]}}
    r = httpx.post(ex.url + "/acecoder/v1/run_tests", json=body, timeout=60)
    assert r.status_code == 200
    out = r.json()
    assert [t["verdict"] for t in out["tests"]] == ["PASSED", "PASSED", "FAILED"]
    assert out["pass_rate"] == pytest.approx(2 / 3) and out["status"] == "OK"
    if languages.toolchain("cpp") is not None:  # compiled once for all of them
        body = {"code": HELLO["cpp"], "language": "cpp", "checker": "tokens",
                "tests": [{"input": f"{i} {i}", "output": str(2 * i)} for i in range(8)]}
        out = httpx.post(ex.url + "/acecoder/v1/run_tests", json=body, timeout=120).json()
        assert out["all_passed"] and out["compile_duration"] > 0
    r = httpx.post(ex.url + "/acecoder/v1/run_tests", json={"code": "", "tests": 5}, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT"


def test_metrics_count_the_http_calls(ex: HttpExecutor) -> None:
    run(ex, "print(1)")
    text = httpx.get(ex.metrics, timeout=10).text
    ok = [line for line in text.splitlines()
          if line.startswith("acecoder_executor_requests_total") and 'method="run_code"' in line
          and 'code="OK"' in line]
    assert ok and float(ok[0].split()[-1]) >= 1
    assert 'acecoder_executor_rpc_latency_seconds_count{method="run_code"}' in text
    assert "acecoder_executor_programs_total" in text  # the same service counts the programs


def test_a_missing_extra_is_named_before_anything_listens() -> None:
    code = ("import sys; sys.modules['uvicorn'] = None\n"
            "from acecoder.cli import main\n"
            "sys.exit(main(['serve', 'executor', '--port', '0', '--http-port', '0', "
            "'--workers', '1']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "pip install 'acecoder[http]'" in done.stderr
    assert "listening" not in done.stdout


# -- tokens and TLS --------------------------------------------------------------------------------

@dataclass
class Secured:
    ex: HttpExecutor
    ca: Path
    client: Issued


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    out = tmp_path_factory.mktemp("pki")
    ca = CA(out, "acecoder-ca")
    server, client = ca.issue("executor", server=True), ca.issue("verl", server=False)
    tokens = out / "tokens"
    tokens.write_text(f"verl {TOKEN}\n")
    s = start("--tls-cert", str(server.cert), "--tls-key", str(server.key), "--auth-tokens",
              str(tokens), workers=1, scheme="https")
    yield Secured(s, ca.files.cert, client)
    assert stop(s) == 0


def test_tokens_and_tls_guard_the_http_port(secured: Secured) -> None:
    url = secured.ex.url
    with httpx.Client(verify=ssl.create_default_context(cafile=secured.ca), timeout=60) as http:
        body = {"code": "print(6 * 7)", "language": "python"}
        r = http.post(url + "/run_code", json=body)
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHENTICATED"
        r = http.post(url + "/run_code", json=body, headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert http.get(url + "/v1/ping").json() == "pong"  # probes carry no token
        r = http.post(url + "/run_code", json=body, headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["run_result"]["stdout"] == "42\n"
        r = http.post(url + f"/run_code?token={TOKEN}", json=body)  # verl sends no headers
        assert r.status_code == 200
    with pytest.raises(httpx.ConnectError):  # a certificate nobody vouched for
        httpx.get(url + "/v1/ping", timeout=10)
    with pytest.raises(httpx.TransportError):  # plaintext to the TLS port
        httpx.get(url.replace("https", "http") + "/v1/ping", timeout=10)
    text = httpx.get(secured.ex.metrics, timeout=10).text
    assert 'code="UNAUTHENTICATED",method="run_code"' in text


@pytest.mark.slow  # verl's import
def test_verl_calls_the_secured_port_with_its_token_in_the_url(
        secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    from verl.utils.reward_score.sandbox_fusion.utils import call_sandbox_api

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(secured.ca))  # what requests trusts
    reply, error = call_sandbox_api(f"{secured.ex.url}/run_code?token={TOKEN}", "print(input())",
                                    "hi", 10, 10, 256)
    assert error is None and reply is not None and reply["run_result"]["stdout"] == "hi\n"
    reply, error = call_sandbox_api(f"{secured.ex.url}/run_code", "print(1)", None, 10, 10, 256)
    assert reply is None and error is not None and "401" in error


@pytest.mark.slow
def test_a_drain_finishes_what_runs_and_refuses_the_rest() -> None:
    s = start(workers=1)
    box: dict[str, httpx.Response] = {}

    def slow() -> None:
        box["r"] = httpx.post(s.url + "/run_code", timeout=60, json={
            "code": "import time\ntime.sleep(1.5)\nprint('done')", "language": "python"})

    t = threading.Thread(target=slow)
    t.start()
    for _ in range(100):  # until it runs
        if "acecoder_executor_inflight 1.0" in httpx.get(s.metrics).text:
            break
        threading.Event().wait(0.05)
    s.proc.send_signal(signal.SIGTERM)
    threading.Event().wait(0.3)
    try:
        late = httpx.post(s.url + "/run_code", json={"code": "print(1)", "language": "python"},
                          timeout=10)
        assert late.status_code == 503 and late.json()["code"] == "UNAVAILABLE"
    except httpx.TransportError:
        pass  # or already closed
    t.join(30)
    assert box["r"].status_code == 200 and box["r"].json()["run_result"]["stdout"] == "done\n"
    assert s.proc.wait(timeout=60) == 0


# -- verl's own SandboxFusion reward code ----------------------------------------------------------

def fn_case(problem: CallProblem) -> dict:  # type: ignore[type-arg]
    """A call-based problem as verl carries it for SandboxFusion: one JSON argument per line of
    stdin, the expected output as verl's wrapper prints the result."""
    def shown(value: object) -> str:
        if isinstance(value, (dict, list, tuple, bool)) or value is None:
            return json.dumps(value)
        return str(value)

    return {"fn_name": problem.fn_name,
            "inputs": ["\n".join(json.dumps(a) for a in args) for args, _ in problem.tests],
            "outputs": [shown(out) for _, out in problem.tests]}


def broken_fn(problem: CallProblem) -> str:
    """The reference made wrong for both callers: verl's wrapper calls a top-level function of
    that name before a method of `Solution`, so a top-level one is perturbed in place."""
    if "class Solution" in problem.solution:
        return broken_call(problem)
    return broken(Problem(problem.task_id, problem.solution, (), "", problem.fn_name))


def fenced(program: str) -> str:
    return f"Here is my solution.\n```python\n{program}\n```\n"


@pytest.mark.slow
def test_verl_scores_through_run_code_as_the_grpc_path_does(ex: HttpExecutor) -> None:
    """verl's SandboxFusion scoring (sandbox_fusion.compute_score, which its
    default_compute_score calls for code data when reward.sandbox_fusion.url is set) on
    StdioProblems, reference and broken solutions: stdio problems per test exactly as our gRPC
    stdio path judges them (checker `lines`: verl compares outputs less their trailing
    newlines), and call-based problems (verl wraps the function call itself) per test as our
    call tests judge them. Every reference passes every test; no broken one passes them all."""
    from verl.utils.reward_score import default_compute_score, sandbox_fusion

    python = [p for p in load_stdio() if "python" in p.solutions]
    stdio = [p for p in python if p.checker == "tokens"][::8] + \
        [next(p for p in python if p.checker.startswith("float"))]
    # APPS (a function) and LeetCode (class Solution) problems, one of them importing
    # sortedcontainers (the `programs` extra, as LeetCode's judge and SandboxFusion's runtime)
    calls = load_calls()[::16] + [next(c for c in load_calls()
                                       if "sortedcontainers" in c.solution)]
    assert len(stdio) >= 5 and len(calls) >= 5
    url = ex.url + "/run_code"
    score = lambda program, truth: sandbox_fusion.compute_score(  # noqa: E731
        url, None, 1024, fenced(program), json.dumps(truth), continuous=True)
    first = stdio[0]
    truth = {"inputs": [i for i, _ in first.tests], "outputs": [o for _, o in first.tests]}
    assert default_compute_score("codecontests", fenced(first.solutions["python"]),
                                 json.dumps(truth), sandbox_fusion_url=url,
                                 concurrent_semaphore=None, memory_limit_mb=1024) == 1.0
    with ExecutorClient(ex.target, timeout=300) as grpc_client:
        for p in stdio:
            truth = {"inputs": [i for i, _ in p.tests], "outputs": [o for _, o in p.tests]}
            tests = [{"input": i, "output": o} for i, o in p.tests]
            for program, good in ((p.solutions["python"], True),
                                  (broken_stdio(p.solutions["python"]), False)):
                value, meta = score(program, truth)
                verl = [m["status"] == "success" for m in meta]
                ours = grpc_client.execute(program, tests, checker="lines", timeout=10)
                assert verl == [v.value == "PASSED" for v in ours.verdicts], (p.task_id, ours)
                if not good:
                    assert value == 0.0 and not any(verl), p.task_id
                if good and p.checker == "tokens":  # verl compares text, not numbers
                    assert value == 1.0 and all(verl), p.task_id
                    assert grpc_client.execute(program, tests, checker=p.checker,
                                               timeout=10).all_passed
        for c in calls:
            truth = fn_case(c)
            tests = [{"input": args, "output": out} for args, out in c.tests]
            for program, good in ((c.solution, True), (broken_fn(c), False)):
                value, meta = score(program, truth)
                verl = [m["status"] == "success" for m in meta]
                assert all(verl) if good else not all(verl), c.task_id
                assert (value == 1.0) if good else value < 1.0, c.task_id
                ours = grpc_client.execute(program, tests, fn_name=c.fn_name, timeout=10)
                assert verl == [v.value == "PASSED" for v in ours.verdicts], (c.task_id, ours)
