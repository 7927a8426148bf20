"""Call tests (`fn_name`) through a real executor: each test calls the program's function (or
`Solution().fn_name`) on JSON arguments, and the test process compares the result, as plain
data, with the expected JSON value, which never reaches the program."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import grpc
import pytest

from acecoder.clients import CallTest, CallTests, ExecutorClient, Program
from acecoder.datasets import broken_call, load_calls
from acecoder.executor import convert
from acecoder.executor.config import ExecutorConfig
from acecoder.executor.pool import WorkerPool
from acecoder.executor.service import validate
from acecoder.executor.types import ExecutionResult, Verdict, parse_ground_truth
from tests.conftest import assert_no_leftovers

ADD = "def add(a, b):\n    return a + b\n"
PAIR = [CallTest([[2, 7, 11, 15], 9], [0, 1]), CallTest([[3, 2, 4], 6], [1, 2])]


@pytest.mark.slow
def test_references_pass_and_broken_variants_fail(client: ExecutorClient) -> None:
    problems = load_calls()
    assert len(problems) == 81  # 7 import sortedcontainers, as LeetCode's judge allows
    assert any("class Solution" in p.solution for p in problems)
    assert any("class Solution" not in p.solution for p in problems)  # APPS: a function
    programs = []
    for p in problems:
        tests = [CallTest(args, out) for args, out in p.tests]
        for source in (p.solution, broken_call(p)):
            programs.append(Program(source, tests, fn_name=p.fn_name, timeout=10.0,
                                    request_id=f"{p.task_id}:{len(programs) % 2}"))
    results = sorted(client.execute_batch(programs, deadline=600), key=lambda r: r.index)
    for p, ref, bad in zip(problems, results[::2], results[1::2]):
        assert ref.all_passed, (p.task_id, [t for t in ref.tests if t.verdict != Verdict.PASSED])
        assert bad.passed == 0, (p.task_id, bad.tests[:3])
        assert bad.verdicts[0] == Verdict.FAILED and bad.tests[0].error_message.startswith(
            "expected "), (p.task_id, bad.tests[0])
    assert sum(len(r.tests) for r in results) > 2000


def _run_pool(requests: list[dict[str, Any]], *, judge: bool) -> list[ExecutionResult]:
    async def go() -> list[ExecutionResult]:
        cfg = ExecutorConfig(workers=1, max_queue=1000, plain_judge=judge)
        async with WorkerPool(cfg) as pool:
            return [await pool.execute(validate(cfg, **r)) for r in requests]

    return asyncio.run(go())


def test_the_judge_answers_call_tests_as_a_fresh_test_process_does() -> None:
    """Call tests are plain checks (they run in the judge) and get the same answers there."""
    requests = []
    for p in load_calls()[:12]:
        calls = [(json.dumps(a), json.dumps(o)) for a, o in p.tests]
        for source in (p.solution, broken_call(p)):
            requests.append({"program": source, "tests": [], "fn_name": p.fn_name,
                             "calls": calls, "timeout": 10.0})
    judged, fresh = _run_pool(requests, judge=True), _run_pool(requests, judge=False)
    answers = [[(r.status, [(t.verdict, t.error_type, t.error_message) for t in r.tests],
                 r.flags) for r in rs] for rs in (judged, fresh)]
    assert answers[0] == answers[1]
    assert sum(r.all_passed for r in judged) == len(requests) // 2


@pytest.mark.parametrize(("program", "tests", "verdicts"), [
    pytest.param(ADD, [CallTest([1, 2], 3), CallTest([1, 2], 4), CallTest([[1], [2]], [1, 2])],
                 ["PASSED", "FAILED", "PASSED"], id="function"),
    pytest.param("class Solution:\n    def twoSum(self, nums, target):\n"
                 "        seen = {}\n        for i, x in enumerate(nums):\n"
                 "            if target - x in seen:\n"
                 "                return [seen[target - x], i]\n"
                 "            seen[x] = i\n", PAIR, ["PASSED", "PASSED"], id="solution-class"),
    pytest.param("class Solution:\n    def twoSum(self, nums, target):\n"
                 "        return (0, 1)\n", PAIR, ["PASSED", "FAILED"], id="tuple-is-a-list"),
    pytest.param("def twoSum(nums, target):\n    return [(0, 1), (2, 3)]\n",
                 [CallTest([[], 0], [[0, 1], [2, 3]]), CallTest([[], 0], [[[0, 1], [2, 3]]])],
                 ["PASSED", "PASSED"], id="nested-tuples-and-wrapped-output"),
    pytest.param("def f():\n    return 5\n",
                 [CallTest([], [5]), CallTest([], [5, 6]), CallTest([], [[5]]), CallTest([], 5)],
                 ["PASSED", "FAILED", "FAILED", "PASSED"], id="one-element-list-rule"),
    pytest.param("def f():\n    return [5]\n", [CallTest([], 5), CallTest([], [[5]])],
                 ["FAILED", "PASSED"], id="a-list-is-not-its-element"),
    pytest.param("import collections\nP = collections.namedtuple('P', 'x y')\n"
                 "def f():\n    return {'a': P(1, 2), 'b': collections.OrderedDict(c=(3,))}\n",
                 [CallTest([], {"a": [1, 2], "b": {"c": [3]}})], ["PASSED"], id="inside-dicts"),
    pytest.param("def f():\n    return 1.0\n", [CallTest([], 1), CallTest([], True)],
                 ["PASSED", "PASSED"], id="python-equality-of-numbers"),
    pytest.param("def sum(xs):\n    return 42\n", [CallTest([[1, 2]], 42)], ["PASSED"],
                 id="named-like-a-builtin"),
    pytest.param("def f(xs):\n    xs.append(9)\n    return xs\n",
                 [CallTest([[1]], [1, 9]), CallTest([[1]], [1, 9])], ["PASSED", "PASSED"],
                 id="arguments-are-fresh-each-test"),
    pytest.param("class Solution:\n    def __init__(self):\n        self.n = 0\n"
                 "    def f(self):\n        self.n += 1\n        return self.n\n",
                 [CallTest([], 1), CallTest([], 1)], ["PASSED", "PASSED"],
                 id="a-fresh-solution-each-test"),
    pytest.param("class Solution:\n    pass\ndef f():\n    return 1\n", [CallTest([], 1)],
                 ["PASSED"], id="solution-without-the-method"),
])
def test_calls_and_the_comparison_rule(client: ExecutorClient, program: str,
                                       tests: list[CallTest], verdicts: list[str]) -> None:
    fn_name = re.search(r"def (?!__)(\w+)", program).group(1)  # type: ignore[union-attr]
    r = client.execute(program, tests, fn_name=fn_name)
    assert [v.value for v in r.verdicts] == verdicts, r
    assert not r.flags


def test_a_failed_call_says_what_was_expected_and_what_came_back(
        client: ExecutorClient) -> None:
    r = client.execute("def f(n):\n    return tuple(range(n))\n",
                       [CallTest([3], [0, 1, 3]), CallTest([500], list(range(499)))],
                       fn_name="f")
    assert r.verdicts == [Verdict.FAILED, Verdict.FAILED]
    assert r.tests[0].error_type == "AssertionError"
    assert r.tests[0].error_message == "expected [0, 1, 3], got (0, 1, 2)"
    assert len(r.tests[1].error_message) < 600  # both values shown cut short
    errors = client.execute("def f(x):\n    return 1 // x\n", [CallTest([0], 0)], fn_name="f")
    assert errors.verdicts == [Verdict.ERROR]
    assert errors.tests[0].error_type == "ZeroDivisionError"
    missing = client.execute("def g():\n    return 1\nSolution = 3\n", [CallTest([], 1)],
                             fn_name="f")
    assert missing.verdicts == [Verdict.ERROR]
    assert missing.tests[0].error_message == (
        "the program defines no function 'f' (nor a class Solution with a method 'f')")
    plain = client.execute("f = [1, 2]\n", [CallTest([], 1)], fn_name="f")
    assert plain.tests[0].error_type == "NameError"  # a plain value is not a function
    attribute = client.execute("class Solution:\n    f = 3\n", [CallTest([], 3)], fn_name="f")
    assert (attribute.tests[0].error_type, attribute.tests[0].error_message) == (
        "TypeError", "Solution().f is not a method of the program's")


ALWAYS_EQUAL = """
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = object.__hash__
"""
# Looks everywhere the program can for the test's expected value: the statement that holds it
# would read "__acecoder_call__('f', [2], 'EXPECTED-...')". Returns what it found, or "clean".
PROBE = r"""
import gc, os, re, sys
PATTERN = re.compile(rb"__acecoder_call__\('f', \[.*?\], '(EXPECTED-[^']*)'")
def look(data):
    if isinstance(data, str):
        data = data.encode('utf-8', 'replace')
    m = PATTERN.search(data) if isinstance(data, bytes) else None
    return m.group(1).decode() if m else None
def memory(pid):
    try:
        maps = open(f'/proc/{pid}/maps').read().splitlines()
        mem = open(f'/proc/{pid}/mem', 'rb')
    except OSError:
        return None
    for line in maps:
        lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
        if 'r' not in line.split()[1] or hi - lo > 1 << 28:
            continue
        try:
            mem.seek(lo)
            found = look(mem.read(hi - lo))
        except (OSError, ValueError, OverflowError):
            continue
        if found:
            return found
    return None
def f(x):
    frame, seen = sys._getframe(), []
    while frame is not None:
        seen.append(repr(frame.f_locals))
        frame = frame.f_back
    seen += [o for o in gc.get_objects() if isinstance(o, (str, bytes))]
    seen.append(repr(dict(os.environ)) + repr(sys.argv))
    try:
        os.set_blocking(0, False)
        seen.append(os.read(0, 1 << 20))
    except OSError:
        pass
    paths = [os.path.join(path, name) for root in ('.', '/tmp')
             for path, _, files in os.walk(root) for name in files]
    for path in paths[:2000]:
        try:
            seen.append(open(path, 'rb').read(1 << 20))
        except OSError:
            pass
    for fd in range(3, 64):
        try:
            seen.append(os.pread(fd, 1 << 20, 0))
        except OSError:
            pass
    for pid in os.listdir('/proc'):
        if pid.isdigit() and int(pid) != os.getpid():
            for what in ('cmdline', 'environ'):
                try:
                    seen.append(open(f'/proc/{pid}/{what}', 'rb').read())
                except OSError:
                    pass
            seen.append(memory(pid))
    return next((found for found in map(look, seen) if found), 'clean')
"""

HOSTILE = [
    pytest.param(ALWAYS_EQUAL + "def f(x):\n    return Anything()\n", id="always-equal-object"),
    pytest.param(ALWAYS_EQUAL + "class Solution:\n    def f(self, x):\n        return Anything()\n",
                 id="always-equal-from-a-solution"),
    pytest.param("class L(list):\n    def __eq__(s, o): return True\n"
                 "def f(x): return L()\n", id="list-subclass-always-equal"),
    pytest.param("class T(tuple):\n    def __eq__(s, o): return True\n"
                 "def f(x): return T()\n", id="tuple-subclass-always-equal"),
    pytest.param("class D(dict):\n    def __eq__(s, o): return True\n"
                 "def f(x): return D()\n", id="dict-subclass-always-equal"),
    pytest.param("class S(str):\n    def __eq__(s, o): return True\n    __hash__ = str.__hash__\n"
                 "def f(x): return S('')\n", id="str-subclass-always-equal"),
    pytest.param(ALWAYS_EQUAL + "class Solution:\n    def __getattr__(self, name):\n"
                 "        return lambda *a: Anything()\n", id="solution-answers-any-name"),
    pytest.param(ALWAYS_EQUAL + "class Solution:\n    def __new__(cls):\n"
                 "        return Anything()\n    def f(self, x):\n        return 0\n",
                 id="solution-makes-another-object"),
    pytest.param("def f(x):\n    return (y for y in [x])\n", id="returns-a-generator"),
    pytest.param("__acecoder_call__ = lambda *args: True\ndef f(x):\n    return 0\n",
                 id="defines-the-helper's-name"),
    pytest.param("import builtins\nbuiltins.AssertionError = type('E', (Exception,), {})\n"
                 "def f(x):\n    raise AssertionError('expected')\n", id="replaces-assertionerror"),
    pytest.param(PROBE, id="looks-for-the-expected-value-everywhere"),
]


@pytest.mark.parametrize("program", HOSTILE)
def test_hostile_programs_never_pass(client: ExecutorClient, server: Any, request: Any,
                                     program: str) -> None:
    tests = [CallTest([2], "EXPECTED-7f3a9c"), CallTest([3], ["EXPECTED-7f3a9c"])]
    r = client.execute(program, tests, fn_name="f", timeout=10.0)
    assert Verdict.PASSED not in r.verdicts, (request.node.callspec.id, r)
    assert len(r.verdicts) == 2
    if request.node.callspec.id.startswith("always-equal"):
        assert r.verdicts == [Verdict.FAILED] * 2 and "OVERRIDDEN_EQUALITY" in r.flags
        assert r.tests[0].error_message == ("expected 'EXPECTED-7f3a9c', got the program's "
                                            "Anything object (not plain data)")
    if request.node.callspec.id == "looks-for-the-expected-value-everywhere":
        assert r.verdicts == [Verdict.FAILED] * 2, r
        assert r.tests[0].error_message == "expected 'EXPECTED-7f3a9c', got 'clean'", r
    assert client.info().workers == 2  # the server still answers
    assert_no_leftovers(root=server.proc.pid)


def test_call_tests_over_grpc(client: ExecutorClient) -> None:
    """The request's own fields: `fn_name` and `call_tests` of JSON text."""
    req = convert.request_to_proto(ADD, [], fn_name="add",
                                   calls=[("[1, 2]", "3"), ("[[1], [2]]", "[[1, 2]]"),
                                          ('["a", "b"]', '"ab"'), ("[1, 2]", "4")])
    r = convert.result_from_proto(client.stub.Execute(req, timeout=60))
    assert [v.value for v in r.verdicts] == ["PASSED", "PASSED", "PASSED", "FAILED"]
    ground_truth = parse_ground_truth({"inputs": [[1, 2], [3, 4]], "outputs": [[3], 8],
                                       "fn_name": "add"})
    assert isinstance(ground_truth, CallTests)
    assert client.execute(ADD, ground_truth).verdicts == [Verdict.PASSED, Verdict.FAILED]


@pytest.mark.parametrize(("fn_name", "calls", "message"), [
    ("add", [("1", "3")], "call_tests[0].input must be a JSON array of the call's arguments"),
    ("add", [("[1, NaN]", "3")], "call_tests[0].input is not JSON (NaN is not JSON)"),
    ("add", [("[1]", "Infinity")], "call_tests[0].output is not JSON (Infinity is not JSON)"),
    ("add", [("[1e999]", "3")], "call_tests[0].input holds a number out of a double's range"),
    ("add", [("[1, 2", "3")], "call_tests[0].input is not JSON"),
    ("add", [("[" * 101 + "]" * 101, "3")], "nested more than 100 levels deep"),
    ("add", [(b"[\xff]", "3")], "call_tests[0].input is not valid UTF-8"),
    ("add", [], "fn_name 'add' is set but call_tests is empty"),
    ("", [("[1, 2]", "3")], "call tests need fn_name"),
    ("add(1)", [("[1, 2]", "3")], "fn_name must be a Python function name"),
    ("lambda", [("[1, 2]", "3")], "fn_name must be a Python function name"),
    ("__class__", [("[1, 2]", "3")], "fn_name must be a Python function name"),
])
def test_bad_call_tests_are_refused_with_reasons(client: ExecutorClient, fn_name: str,
                                                 calls: list[tuple[Any, str]],
                                                 message: str) -> None:
    req = convert.request_to_proto(ADD, [], fn_name=fn_name, calls=calls)
    with pytest.raises(grpc.RpcError) as err:
        client.stub.Execute(req, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or ""), err.value.details()


def test_call_tests_mix_with_nothing_else(client: ExecutorClient) -> None:
    req = convert.request_to_proto(ADD, ["assert add(1, 2) == 3"], fn_name="add",
                                   calls=[("[1, 2]", "3")])
    with pytest.raises(grpc.RpcError) as err:
        client.stub.Execute(req, timeout=60)
    assert "not two kinds" in (err.value.details() or "")
    req = convert.request_to_proto("print(1)", [], fn_name="add", calls=[("[1, 2]", "3")],
                                   language="cpp")
    with pytest.raises(grpc.RpcError) as err:
        client.stub.Execute(req, timeout=60)
    assert "call tests are Python's" in (err.value.details() or "")
    with pytest.raises(ValueError, match="call tests need fn_name"):
        client.execute(ADD, [CallTest([1, 2], 3)])
    with pytest.raises(ValueError, match="all stdio tests \\(or, with fn_name, all call tests"):
        client.execute(ADD, [CallTest([1, 2], 3), "assert add(1, 2) == 3"], fn_name="add")


def test_exec_runs_call_records(tmp_path: Path) -> None:
    from tests.integration.test_cli import acecoder, read_jsonl, write_jsonl

    truth = {"inputs": [[1, 2], [3, 4]], "outputs": [[3], 7]}
    solution = "class Solution:\n    def add(self, a, b):\n        return a + b\n"
    rows = [
        {"id": "list", "program": ADD, "fn_name": "add",
         "tests": [{"input": [1, 2], "output": 3}, {"input": [1, 2], "output": 4}]},
        {"id": "truth", "program": ADD, "fn_name": "add", "tests": truth},
        {"id": "own-fn-name", "program": solution, "tests": {**truth, "fn_name": "add"}},
        {"id": "string", "program": solution, "tests": json.dumps({**truth, "fn_name": "add"})},
        {"id": "bad-name", "program": ADD, "fn_name": "add(", "tests": truth},
        {"id": "asserts", "program": ADD, "tests": ["assert add(1, 2) == 3"]},
    ]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, rows)
    acecoder("exec", "--input", str(inp), "--output", str(out), "--quiet")
    got = {r["id"]: r for r in read_jsonl(out)}
    assert set(got) == {r["id"] for r in rows}
    assert all(set(r) == {"id", "pass_rate", "verdicts", "status"}
               for k, r in got.items() if k != "bad-name")
    assert got["list"]["verdicts"] == ["PASSED", "FAILED"]
    for rid in ("truth", "own-fn-name", "string", "asserts"):
        assert got[rid]["pass_rate"] == 1.0, got[rid]
    assert got["bad-name"]["status"] == "INVALID_INPUT"
    assert "fn_name must be a Python function name" in str(got["bad-name"]["error"])


@pytest.mark.parametrize(("row", "message"), [
    ({"fn_name": "add", "tests": [{"input": 1, "output": 3}]}, "must be a call test"),
    ({"fn_name": 3, "tests": [{"input": [1], "output": 3}]}, "\"fn_name\" must be a string"),
    ({"fn_name": "add", "tests": [{"input": [1], "output": float("nan")}]}, "not JSON data"),
    ({"tests": {"inputs": [[1]], "outputs": [1], "fn_name": "g"}, "fn_name": "add"},
     "the ground truth names 'g' but fn_name is 'add'"),
])
def test_exec_refuses_malformed_call_records(tmp_path: Path, row: dict[str, object],
                                             message: str) -> None:
    from tests.integration.test_cli import acecoder, write_jsonl

    inp = tmp_path / "in.jsonl"
    write_jsonl(inp, [{"id": "a", "program": ADD, **row}])
    proc = acecoder("exec", "--input", str(inp), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


GOOD_ADD = "Here:\n```python\ndef add(a, b):\n    return a + b\n```"
HALF_ADD = "class Solution:\n    def add(self, a, b):\n        return a * b\n"  # 0 * 0 == 0 only
TRUTH = {"inputs": [[1, 2], [0, 0]], "outputs": [[3], 0], "fn_name": "add"}


def test_reward_adapters_take_call_ground_truth(server: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from acecoder.clients.openrlhf import reward_func
    from acecoder.clients.trl import make_reward
    from acecoder.clients.verl import compute_score_batch

    listed = {"tests": [{"input": [1, 2], "output": 3}], "fn_name": "add"}
    got = compute_score_batch(
        data_sources=["taco"] * 3, solution_strs=[GOOD_ADD, HALF_ADD, GOOD_ADD],
        ground_truths=[TRUTH, json.dumps(TRUTH), listed], extra_infos=None,
        executor=server.target)
    assert [g["score"] for g in got] == [1.0, 0.5, 1.0] and all(g["ok"] for g in got)
    reward = make_reward(executor=server.target)
    assert asyncio.run(reward(prompts=["Write add."] * 2, completions=[GOOD_ADD, HALF_ADD],
                              tests=[TRUTH, json.dumps(TRUTH)])) == [1.0, 0.5]
    monkeypatch.setenv("ACECODER_EXECUTOR", server.target)
    prompt = "<|im_start|>user\nWrite add(a, b).<|im_end|>\n<|im_start|>assistant\n"
    out = reward_func([prompt + GOOD_ADD, prompt + HALF_ADD], [prompt] * 2,
                      [json.dumps(TRUTH)] * 2)
    assert out["rewards"].tolist() == [1.0, 0.5]


def test_the_gateway_takes_call_ground_truth_as_labels(server: Any) -> None:
    import httpx

    from acecoder.server.rm import gateway
    from acecoder.server.rm.config import RewardConfig
    from acecoder.server.rm.service import RewardService
    from tests.unit.server.rm.test_gateway_errors import BrokenBackend

    async def main() -> dict[str, Any]:
        service = RewardService(RewardConfig(executor=server.target), backend=BrokenBackend())
        await service.start()
        try:
            gw = gateway.Gateway(service, reward="rule")  # the RM's forward is never asked
            prompt = "<|im_start|>user\nWrite add(a, b).<|im_end|>\n<|im_start|>assistant\n"
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app),
                                         base_url="http://gw") as http:
                r = await http.post("/get_reward", json={
                    "query": [prompt + q + "<|im_end|>" for q in (GOOD_ADD, HALF_ADD, GOOD_ADD)],
                    "labels": [json.dumps(TRUTH), TRUTH, {**TRUTH, "fn_name": "add("}]})
                assert r.status_code == 200, r.text
                body: dict[str, Any] = r.json()
                return body
        finally:
            await service.close()

    body = asyncio.run(main())
    assert body["rewards"] == [1.0, 0.5, 0.0]
    assert body["extra_logs"]["failed"] == [0.0, 0.0, 1.0]
    assert "fn_name must be a Python function name" in body["extra_logs"]["error"][2]
