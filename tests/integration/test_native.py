"""Other languages than Python over gRPC: compiled once per request inside the sandbox, run on
each stdio test; compile failures are a status; memory limits hold for runtimes that reserve
far more address space than they use (the JVM, V8)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from acecoder.clients import ExecutorClient, Program, StdioTest
from acecoder.datasets import broken_cpp, load_stdio
from acecoder.executor import languages
from acecoder.executor.types import ProgramStatus, Verdict

ADD = [StdioTest("2 3\n", "5\n"), StdioTest("10 20", "30"), StdioTest("1 1", "3")]
SOURCES = {
    "c": "#include <stdio.h>\nint main(void){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)"
         "return 1;printf(\"%lld\\n\",a+b);return 0;}\n",
    "cpp": "#include <bits/stdc++.h>\nint main(){long long a,b;std::cin>>a>>b;"
           "std::cout<<a+b<<\"\\n\";}\n",
    "java": "import java.util.*;\npublic class Main{public static void main(String[] x){"
            "Scanner s=new Scanner(System.in);System.out.println(s.nextLong()+s.nextLong());}}\n",
    "nodejs": "const v=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(Number);\n"
              "console.log(v[0]+v[1]);\n",
    "rust": "use std::io::Read;\nfn main(){let mut s=String::new();"
            "std::io::stdin().read_to_string(&mut s).unwrap();let v:Vec<i64>=s.split_whitespace()"
            ".map(|x|x.parse().unwrap()).collect();println!(\"{}\",v[0]+v[1]);}\n",
    "go": "package main\nimport \"fmt\"\nfunc main(){var a,b int64\nfmt.Scan(&a,&b)\n"
          "fmt.Println(a+b)}\n",
}


def test_every_language_has_a_program_here() -> None:
    assert set(SOURCES) == set(languages.LANGUAGES) - {"python"}


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_each_language_runs_its_stdio_tests(client: ExecutorClient, language: str) -> None:
    """Where its toolchain is installed (the executor image has them all), it runs; where it is
    not, the request is refused with the package to install."""
    if languages.toolchain(language) is None:
        with pytest.raises(grpc.RpcError) as err:
            client.execute(SOURCES[language], ADD, language=language)
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert languages.LANGUAGES[language].package in err.value.details()
        return
    r = client.execute(SOURCES[language], ADD, language=language, memory_mb=256, timeout=5.0,
                       compile_timeout=30.0)
    assert r.status is ProgramStatus.OK, r
    assert r.verdicts == [Verdict.PASSED, Verdict.PASSED, Verdict.FAILED], r
    assert r.stdout == "2\n"  # the output of the first test that did not pass
    assert all(t.exit_code == 0 and t.cpu_seconds > 0 for t in r.tests)
    assert (r.compile_duration > 0) == bool(languages.LANGUAGES[language].compile)


def _cpp_programs(problems: list, broken: bool) -> list[Program]:
    return [Program(broken_cpp(p.solutions["cpp"]) if broken else p.solutions["cpp"],
                    [StdioTest(i, o) for i, o in p.tests], checker=p.checker, timeout=10.0,
                    language="cpp", request_id=p.task_id) for p in problems]


@pytest.mark.parametrize("count", [
    pytest.param(8, id="eight"),
    pytest.param(None, id="all", marks=[pytest.mark.slow, pytest.mark.timeout(900)]),
])
def test_cpp_references_pass_and_broken_variants_fail(client: ExecutorClient,
                                                      count: int | None) -> None:
    """Every C++ reference passes; the broken variants fail (all of them for the first eight,
    every fourth of the rest: each is a compile, and the references are the point)."""
    problems = [p for p in load_stdio() if "cpp" in p.solutions][:count]
    refs = list(client.execute_batch(_cpp_programs(problems, False), deadline=900))
    sample = problems[:8] + problems[8::4]
    bads = list(client.execute_batch(_cpp_programs(sample, True), deadline=900))
    for r in refs:
        assert r.all_passed, (r.request_id, r.status, r.status_detail[:300], r.tests[:2])
    for r in bads:
        assert r.status is ProgramStatus.OK and r.passed == 0, (r.request_id, r.tests[:2])
    assert len(refs) == len(problems) and len(bads) == len(sample)


def test_a_compile_failure_is_a_status_and_every_test_errs(client: ExecutorClient) -> None:
    r = client.execute("int main() { return undefined_name; }\n", ADD, language="cpp")
    assert r.status is ProgramStatus.COMPILE_ERROR
    assert r.verdicts == [Verdict.ERROR] * 3 and r.pass_rate == 0.0
    assert "undefined_name" in r.status_detail and "main.cpp:1" in r.status_detail
    assert "/tmp" not in r.status_detail  # the compiler's paths name the file only
    assert {t.error_type for t in r.tests} == {"CompileError"}


def test_the_program_is_compiled_once_per_request(client: ExecutorClient) -> None:
    """The first run removes the binary it was started from: were each test to compile its own,
    the others would run; compiled once, they find nothing to run."""
    program = ("#include <unistd.h>\n#include <stdio.h>\n"
               "int main(){unlink(\"main\");puts(\"5\");return 0;}\n")
    r = client.execute(program, [StdioTest("", "5")] * 3, language="c")
    assert r.verdicts[0] is Verdict.PASSED, r
    assert r.verdicts[1:] == [Verdict.ERROR, Verdict.ERROR], r
    assert r.tests[1].error_type == "LaunchError"


@pytest.mark.parametrize(("language", "program"), [
    ("java", "import java.util.*;\npublic class Main{public static void main(String[] x){"
             "int n=new Scanner(System.in).nextInt();long[][] a=new long[n][];"
             "for(int i=0;i<n;i++){a[i]=new long[1<<20];a[i][7]=i;}"
             "System.out.println(a.length);}}\n"),
    ("nodejs", "const n=Number(require('fs').readFileSync(0,'utf8'));const a=[];"
               "for(let i=0;i<n;i++)a.push(new Array(1<<20).fill(i+0.5));console.log(a.length);\n"),
    ("cpp", "#include <bits/stdc++.h>\nint main(){int n;std::cin>>n;"
            "std::vector<std::vector<long long>> v;"
            "for(int i=0;i<n;i++)v.emplace_back(1<<20,i);std::cout<<v.size()<<\"\\n\";}\n"),
    ("go", "package main\nimport \"fmt\"\nfunc main(){var n int\nfmt.Scan(&n)\n"
           "a:=make([][]int64,0)\nfor i:=0;i<n;i++{b:=make([]int64,1<<20)\n"
           "for j:=range b{b[j]=int64(i)}\na=append(a,b)}\nfmt.Println(len(a))}\n"),
])
def test_memory_limits_hold_for_every_runtime(client: ExecutorClient, language: str,
                                              program: str) -> None:
    """Under a 256 MB limit, 12 blocks of 8 MiB (96 MiB) run and print 12; 60 blocks (480 MiB)
    are MEMORY, even for runtimes that reserve far more address space than they use."""
    if languages.toolchain(language) is None:  # refused: see the test above
        return
    r = client.execute(program, [StdioTest("12", "12"), StdioTest("60", "60")],
                       language=language, memory_mb=256, timeout=10.0, compile_timeout=30.0)
    assert r.verdicts == [Verdict.PASSED, Verdict.MEMORY], r


def test_info_lists_the_languages_with_their_versions(client: ExecutorClient) -> None:
    info = client.info()
    listed = {lang.name: lang.version for lang in info.languages}
    assert listed == languages.available()
    assert {"python", "c", "cpp"} <= set(listed)
    assert "12" in listed["cpp"] or "g++" in listed["cpp"]


def test_a_language_without_a_toolchain_is_a_failed_precondition(
        client: ExecutorClient) -> None:
    for name in [n for n in languages.LANGUAGES if languages.toolchain(n) is None]:
        with pytest.raises(grpc.RpcError) as err:
            client.execute("x", ADD, language=name)
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert languages.LANGUAGES[name].package in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.execute("x", ADD, language="cobol")
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "cpp" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.execute("int main(){}", ["assert f(1) == 1"], language="cpp")
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "stdio tests" in err.value.details()


def test_exec_runs_records_in_other_languages(tmp_path: Path) -> None:
    from tests.integration.test_cli import acecoder, write_jsonl

    rows = [
        {"id": "cpp", "program": SOURCES["cpp"], "language": "cpp",
         "tests": [{"input": "2 3", "output": "5"}]},
        {"id": "bad", "program": "int main( {", "language": "cpp",
         "tests": {"inputs": ["1 2"], "outputs": ["3"]}},
    ]
    missing = [n for n in languages.LANGUAGES if languages.toolchain(n) is None]
    rows += [{"id": n, "program": "x", "language": n, "tests": [{"input": "", "output": ""}]}
             for n in missing]
    src = tmp_path / "in.jsonl"
    write_jsonl(src, rows)
    out = tmp_path / "out.jsonl"
    acecoder("exec", "--input", str(src), "--output", str(out), "--workers", "1")
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert got["cpp"]["pass_rate"] == 1.0 and got["cpp"]["status"] == "OK"
    assert got["bad"]["status"] == "COMPILE_ERROR" and got["bad"]["verdicts"] == ["ERROR"]
    for n in missing:  # a line of its own that says what to install; the others still run
        assert got[n]["status"] == "INVALID_INPUT"
        assert languages.LANGUAGES[n].package in got[n]["error"]


# -- builds reused across requests (verl's one call per test) --------------------------------

STAMP = "#include <stdio.h>\nint main(void){puts(__TIME__);return 0;}\n"


@pytest.mark.slow
def test_the_same_source_is_compiled_once_per_executor_not_once_per_request(
        client: ExecutorClient) -> None:
    """A binary that prints its compile time, sent once, then in bursts 1.1 s apart that keep
    both of the server's workers busy: were each request (or each worker) to compile it, the
    times would differ; the pool hands the first worker's build to the other (SharedBuilds),
    so every run prints the first compile's time."""
    import time

    source = STAMP.replace("__TIME__", '"once " __TIME__')  # a source no other test built
    first = client.execute(source, [StdioTest("", "never")], language="c")
    assert first.status is ProgramStatus.OK and first.compile_duration > 0.01, first
    stamps = []
    for _ in range(3):
        time.sleep(1.1)
        batch = [Program(source, [StdioTest("", "never")], language="c", request_id=str(k))
                 for k in range(6)]
        for r in client.execute_batch(batch):
            assert r.status is ProgramStatus.OK and r.verdicts == [Verdict.FAILED], r
            stamps.append(r.stdout.strip())
    assert set(stamps) == {first.stdout.strip()}, stamps


TAMPER = ("#include <stdio.h>\n#include <unistd.h>\n#include <sys/stat.h>\n"
          "int main(void){unlink(\"main\");FILE*f=fopen(\"main\",\"w\");"
          "fputs(\"#!/bin/sh\\necho 0\\n\",f);fclose(f);chmod(\"main\",0755);"
          "puts(\"5\");return 0;}\n")


@pytest.mark.slow
def test_a_program_that_replaces_its_binary_changes_no_later_request(
        client: ExecutorClient) -> None:
    """The build is kept the moment the compiler is gone, before any run: what a run does to
    its own copy stays in its own directory. Every request's first run is the real program."""
    for _ in range(4):
        r = client.execute(TAMPER, [StdioTest("", "5"), StdioTest("", "5")], language="c")
        assert r.verdicts[0] is Verdict.PASSED, r
        assert r.verdicts[1] is not Verdict.PASSED, r  # its own copy was replaced


@pytest.mark.slow
def test_a_compile_that_failed_for_its_moment_is_not_remembered(client: ExecutorClient) -> None:
    """Only successful builds are kept: a compile stopped by a tight limit fails that request
    alone, and the same source builds for the next."""
    source = SOURCES["c"].replace("a+b", "b+a")  # a source no other test built
    r = client.execute(source, ADD, language="c", compile_timeout=0.001)
    assert r.status is ProgramStatus.COMPILE_ERROR, r
    for _ in range(2):
        r = client.execute(source, ADD, language="c")
        assert r.verdicts == [Verdict.PASSED, Verdict.PASSED, Verdict.FAILED], r


MAPPED_LIBRARIES = ("#include <stdio.h>\n#include <string.h>\nint main(void){char l[4096];int n=0;"
                    "FILE*f=fopen(\"/proc/self/maps\",\"r\");if(!f)return 2;"
                    "while(fgets(l,sizeof l,f))n+=strstr(l,\".so\")!=0;printf(\"%d\\n\",n);}\n")


@pytest.mark.parametrize("language", ["c", "cpp"])
def test_c_and_cpp_programs_are_linked_statically(client: ExecutorClient, language: str) -> None:
    """Where the toolchain links statically (Debian's does: make test runs there), a C or C++
    run maps no shared library: its start costs no dynamic loading (see Language.static)."""
    assert languages.links_static(language)
    assert "-static" in languages.compile_template(languages.LANGUAGES[language])
    r = client.execute(MAPPED_LIBRARIES, [StdioTest("", "0")], language=language)
    assert r.verdicts == [Verdict.PASSED], r
