"""Native code (C, C++) and its compiler, tried as an attacker would: every property the sandbox
proves for Python holds for a binary, which makes its syscalls directly (no interpreter between
it and the kernel), and for the compiler, which is a hostile-input processor too.

Each program prints "contained" when the attack failed; the test passes only on that output, so
the *verdict* proves containment, and the server must serve on with nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from acecoder.clients import ExecutorClient, StdioTest
from acecoder.executor.types import ProgramStatus, Verdict
from tests.conftest import assert_no_leftovers

REPO = Path(__file__).resolve().parents[2]
HEAD = ("#define _GNU_SOURCE\n#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
        "#include <fcntl.h>\n#include <sched.h>\n#include <signal.h>\n#include <errno.h>\n"
        "#include <sys/syscall.h>\n#include <sys/types.h>\n#include <sys/ipc.h>\n"
        "#include <sys/shm.h>\n#include <sys/mount.h>\n#include <sys/ptrace.h>\n"
        "#include <sys/socket.h>\n#include <netinet/in.h>\n#include <arpa/inet.h>\n"
        "#include <linux/io_uring.h>\n")


def _denied(body: str) -> str:
    """A C program whose `body` evaluates to -1 when the attack fails."""
    return HEAD + f"int main(void){{ long r = ({body}); puts(r == -1 ? \"contained\" : \"escaped\");" \
                  " return 0; }\n"


SYSCALLS = [
    pytest.param(_denied("syscall(SYS_socket, AF_INET, SOCK_STREAM, 0)"), id="raw-socket"),
    pytest.param(_denied("syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0)"), id="raw-unix-socket"),
    pytest.param(_denied("syscall(SYS_unshare, CLONE_NEWUSER)"), id="raw-unshare-user-ns"),
    pytest.param(_denied("syscall(SYS_ptrace, PTRACE_ATTACH, getppid(), 0, 0)"),
                 id="raw-ptrace-parent"),
    pytest.param(_denied("syscall(SYS_shmget, IPC_PRIVATE, 1 << 20, IPC_CREAT | 0600)"),
                 id="raw-sysv-shared-memory"),
    pytest.param(_denied("syscall(SYS_mount, \"none\", \"/tmp\", \"tmpfs\", 0, 0)"),
                 id="raw-mount"),
    pytest.param(_denied("({ struct io_uring_params p = {0}; "
                         "syscall(SYS_io_uring_setup, 8, &p); })"), id="raw-io-uring"),
    pytest.param(_denied("({ cpu_set_t s; CPU_ZERO(&s); for (int i = 0; i < 64; i++) "
                         "CPU_SET(i, &s); syscall(SYS_sched_setaffinity, 0, sizeof s, &s); })"),
                 id="raw-widen-cpu-affinity"),
    pytest.param(_denied("syscall(SYS_kill, 1, SIGKILL)"), id="raw-kill-init"),
    pytest.param(_denied("({ long fd = open(\"REPO/pyproject.toml\", O_RDONLY); fd; })"),
                 id="open-the-checkout"),
    pytest.param(_denied("({ long fd = open(\"/etc/shadow\", O_RDONLY); fd; })"),
                 id="open-etc-shadow"),
    pytest.param(_denied("({ long fd = open(\"/usr/bin/acecoder-escape\", O_WRONLY | O_CREAT, "
                         "0600); fd; })"), id="write-system-directory"),
]


@pytest.mark.parametrize("program", SYSCALLS)
def test_a_binary_gets_the_same_sandbox(client: ExecutorClient, server, program: str) -> None:  # type: ignore[no-untyped-def]
    program = program.replace("REPO", str(REPO))
    r = client.execute(program, [StdioTest("", "contained")], language="c", timeout=5.0)
    assert r.status is ProgramStatus.OK, (r.status, r.status_detail[:400])
    assert r.verdicts == [Verdict.PASSED], (r.stdout, r.tests)
    assert_no_leftovers(root=server.proc.pid)


def test_no_network_for_a_binary(client: ExecutorClient, server) -> None:  # type: ignore[no-untyped-def]
    host, port = server.target.rsplit(":", 1)
    program = HEAD + (
        "int main(void){ int s = socket(AF_INET, SOCK_STREAM, 0);\n"
        "  struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(PORT);\n"
        "  inet_pton(AF_INET, \"HOST\", &a.sin_addr);\n"
        "  int c = s < 0 ? -1 : connect(s, (struct sockaddr *)&a, sizeof a);\n"
        "  puts(c == 0 ? \"connected\" : \"contained\"); return 0; }\n"
    ).replace("PORT", port).replace("HOST", host)
    r = client.execute(program, [StdioTest("", "contained")], language="c", timeout=5.0)
    assert r.verdicts == [Verdict.PASSED], r


PROGRAMS = [
    pytest.param("#include <unistd.h>\nint main(){ for (;;) fork(); }\n", {Verdict.TIMEOUT},
                 id="fork-bomb"),
    pytest.param("#include <unistd.h>\n#include <stdio.h>\nint main(){ if (fork() == 0) {"
                 " setsid(); if (fork() == 0) { close(1); close(2); for (;;) sleep(1000); }"
                 " _exit(0); } puts(\"contained\"); return 0; }\n", {Verdict.PASSED},
                 id="double-forked-daemon-outlives-its-test"),
    pytest.param("#include <unistd.h>\n#include <stdio.h>\nint main(){ if (fork() == 0) {"
                 " for (;;) sleep(1000); } puts(\"contained\"); return 0; }\n",
                 {Verdict.PASSED}, id="child-holds-the-output-pipe"),
    pytest.param("#include <pthread.h>\n#include <unistd.h>\nvoid *spin(void *a){ for(;;); }\n"
                 "int main(){ pthread_t t[8]; for (int i = 0; i < 8; i++) "
                 "pthread_create(&t[i], 0, spin, 0); for(;;); }\n", {Verdict.TIMEOUT},
                 id="threads-burning-cpu"),
    pytest.param("#include <stdio.h>\nint main(){ for (;;) fputs(\"xxxxxxxxxxxxxxxx\", stdout); }\n",
                 {Verdict.ERROR}, id="endless-output"),
    pytest.param("#include <stdlib.h>\n#include <string.h>\nint main(){ for (;;) "
                 "{ char *p = malloc(1 << 20); if (!p) return 3; memset(p, 1, 1 << 20); } }\n",
                 {Verdict.MEMORY, Verdict.ERROR}, id="memory-bomb"),
    pytest.param("int main(){ return *(volatile int *)0; }\n", {Verdict.CRASHED}, id="segfault"),
    pytest.param("#include <signal.h>\nint main(){ raise(SIGSTOP); return 0; }\n",
                 {Verdict.TIMEOUT}, id="stop-itself"),
]


@pytest.mark.parametrize(("program", "allowed"), PROGRAMS)
def test_hostile_binaries_are_contained(client: ExecutorClient, server, program: str,  # type: ignore[no-untyped-def]
                                        allowed: set[Verdict]) -> None:
    # A memory bomb gets the time to reach its limit where first touching memory is slow
    # (see test_containment.py).
    timeout = 10.0 if allowed == {Verdict.MEMORY, Verdict.ERROR} else 1.0
    r = client.execute(program, [StdioTest("", "contained")] * 2, language="c", timeout=timeout,
                       memory_mb=256, output_limit=1 << 20)
    assert r.status is ProgramStatus.OK, (r.status, r.status_detail[:400])
    assert set(r.verdicts) <= allowed, r.tests
    assert_no_leftovers(root=server.proc.pid)
    ok = client.execute("int main(){ return 0; }\n", [StdioTest("", "")], language="c")
    assert ok.all_passed  # the service keeps serving


COMPILER_ATTACKS = [
    pytest.param("#include \"/dev/zero\"\n", id="include-dev-zero"),
    pytest.param("#include \"/proc/1/environ\"\n", id="include-init-environment"),
    pytest.param("#include \"REPO/executor/config.py\"\n", id="include-the-checkout"),
    # 2**30 instantiations: the compiler runs out of time or memory, never the server.
    pytest.param("template<int N> struct B { static const int v = B<N-1>::v + B<N-1>::v; };\n"
                 "template<> struct B<0> { static const int v = 1; };\n"
                 "template<int N> struct C { static const long v = C<N-1>::v + B<N % 30>::v; };\n"
                 "template<> struct C<0> { static const long v = 0; };\n"
                 "int main(){ return C<100000>::v; }\n", id="template-bomb"),
    # Millions of diagnostics, each echoing a long line.
    pytest.param("#define X(a) a a a a a a a a a a\nint main(){ X(X(X(X(X(X(undefined_ab"
                 "cdefghijklmnopqrstuvwxyzabcdefghijklmnop;)))))) }\n", id="gigabytes-of-diagnostics"),
]


@pytest.mark.parametrize("program", COMPILER_ATTACKS)
def test_hostile_input_to_the_compiler_is_a_compile_error(client: ExecutorClient, server,  # type: ignore[no-untyped-def]
                                                          program: str) -> None:
    program = program.replace("REPO", str(REPO))
    r = client.execute(program, [StdioTest("", "")], language="cpp", compile_timeout=5.0)
    assert r.status is ProgramStatus.COMPILE_ERROR, (r.status, r.tests)
    assert r.verdicts == [Verdict.ERROR]
    assert "max_tests" not in r.status_detail  # nothing of the checkout came back
    assert "PATH=" not in r.status_detail  # nor of another process's environment
    assert len(r.status_detail) <= 17 * 1024
    assert_no_leftovers(root=server.proc.pid)


# Memory a runtime's own limits do not count: shared anonymous mappings (outside RLIMIT_DATA),
# buffers off the JVM's and V8's heaps. Each holds 1 GiB and prints "touched"; under a 256 MB
# limit that answer must never pass.
PAST_THE_HEAP = [
    pytest.param("c", "#include <stdio.h>\n#include <sys/mman.h>\nint main(){ size_t n = 1UL << 30;"
                 " char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);"
                 " if (p == MAP_FAILED) return 1; for (size_t i = 0; i < n; i += 4096) p[i] = 1;"
                 " puts(\"touched\"); return 0; }\n", id="c-shared-anonymous-mapping"),
    pytest.param("nodejs", "const a = [];\nfor (let i = 0; i < 8; i++) a.push(Buffer.alloc(128 << 20, 1));"
                 "\nconsole.log('touched');\n", id="node-buffers-off-the-v8-heap"),
    pytest.param("java", "import java.nio.ByteBuffer;\npublic class Main{public static void "
                 "main(String[] x){ByteBuffer[] b=new ByteBuffer[8];for(int i=0;i<8;i++){"
                 "b[i]=ByteBuffer.allocateDirect(128<<20);for(int j=0;j<(128<<20);j+=4096)"
                 "b[i].put(j,(byte)1);}System.out.println(\"touched\");}}\n",
                 id="java-direct-buffers-off-the-heap"),
    pytest.param("go", "package main\nimport (\"fmt\"; \"syscall\")\nfunc main(){\n"
                 "b, err := syscall.Mmap(-1, 0, 1<<30, syscall.PROT_READ|syscall.PROT_WRITE, "
                 "syscall.MAP_SHARED|syscall.MAP_ANON)\nif err != nil { return }\n"
                 "for i := 0; i < len(b); i += 4096 { b[i] = 1 }\nfmt.Println(\"touched\")}\n",
                 id="go-shared-anonymous-mapping"),
]


@pytest.mark.parametrize(("language", "program"), PAST_THE_HEAP)
def test_memory_the_runtime_does_not_count_still_counts(client: ExecutorClient,  # type: ignore[no-untyped-def]
                                                        server, language: str,
                                                        program: str) -> None:
    from acecoder.executor import languages

    if languages.toolchain(language) is None:  # refused outright (see test_native.py)
        return
    r = client.execute(program, [StdioTest("", "touched")], language=language, memory_mb=256,
                       timeout=20.0, compile_timeout=30.0)
    assert r.status is ProgramStatus.OK, (r.status, r.status_detail[:300])
    assert r.verdicts[0] in {Verdict.MEMORY, Verdict.ERROR, Verdict.CRASHED}, r.tests
    assert_no_leftovers(root=server.proc.pid)


# Each line is one way to change what a later compile reads through the precompiled header
# (executor/pch.py); each must fail. The program prints how many did not.
_PCH_ATTACKS = r"""
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
int main(void) {
    char dir[4096], gch[4200], other[4300], bits[4200];
    if (scanf("%4095s", dir) != 1) return 2;
    snprintf(bits, sizeof bits, "%s/bits", dir);
    snprintf(gch, sizeof gch, "%s/stdc++.h.gch", bits);
    snprintf(other, sizeof other, "%s/other.gch", bits);
    if (access(gch, R_OK) != 0) { puts("no header to attack"); return 0; }
    int done = 0;
    done += open(gch, O_WRONLY) >= 0;
    done += open(gch, O_WRONLY | O_TRUNC) >= 0;
    done += unlink(gch) == 0;
    done += rename(gch, other) == 0;
    done += chmod(gch, 0666) == 0;
    done += open(other, O_WRONLY | O_CREAT, 0644) >= 0;
    done += symlink("/dev/zero", other) == 0;
    done += rmdir(bits) == 0;
    done += rename(bits, other) == 0;
    done += chmod(dir, 0777) == 0;
    done += mkdir(other, 0777) == 0;
    snprintf(other, sizeof other, "%s/stdc++.h", bits);  /* the header beside it */
    done += open(other, O_WRONLY | O_APPEND) >= 0;
    done += unlink(other) == 0;
    printf(done ? "changed %d ways\n" : "contained\n", done);
    return 0;
}
"""


def test_no_program_can_change_the_precompiled_header(client: ExecutorClient,  # type: ignore[no-untyped-def]
                                                      server) -> None:
    """The header every C++ compile of every request reads belongs to root and is writable by
    no one else; a program (whose uid the compiler shares) that knows where it is changes
    nothing, and a later compile that uses it builds the right program."""
    from acecoder.executor import pch

    assert pch.build()
    where = pch.ready()
    assert where is not None
    r = client.execute(_PCH_ATTACKS, [StdioTest(where + "\n", "contained")], language="c")
    assert r.verdicts == [Verdict.PASSED], (r.stdout, r)
    r = client.execute("#include <bits/stdc++.h>\n#include <bits/stdc++.h>\n"  # twice
                       "int main(){std::set<int> s{5,3,9};"
                       "std::cout<<*s.begin()<<*s.rbegin()<<'\\n';}\n",
                       [StdioTest("", "39")], language="cpp")
    assert r.verdicts == [Verdict.PASSED], r
    assert pch.ready() == where
    assert_no_leftovers(root=server.proc.pid)


# Its first run replaces its own binary with a script that prints 0, then prints 5.
_REWRITES_ITS_BINARY = (
    "#include <stdio.h>\n#include <unistd.h>\n#include <sys/stat.h>\n"
    "int main(void){unlink(\"main\");FILE*f=fopen(\"main\",\"w\");"
    "fputs(\"#!/bin/sh\\necho 0\\n\",f);fclose(f);chmod(\"main\",0755);"
    "puts(\"5\");return 0;} /* shared */\n")


def test_a_build_shared_between_workers_is_the_compilers_not_a_runs(  # type: ignore[no-untyped-def]
        client: ExecutorClient, server) -> None:
    """The pool hands a build one worker made to the others (SharedBuilds): what it hands is
    what the compiler left, read before any run. A program that rewrites its binary, sent
    alone and then in bursts that keep every worker busy (so each gets the shared build):
    every request's first run is the real program; only its own copy was changed."""
    from acecoder.clients import Program

    first = client.execute(_REWRITES_ITS_BINARY, [StdioTest("", "5"), StdioTest("", "5")],
                           language="c")
    assert [v.value for v in first.verdicts] == ["PASSED", "FAILED"], first
    for _ in range(2):
        batch = [Program(_REWRITES_ITS_BINARY, [StdioTest("", "5"), StdioTest("", "5")],
                         language="c", request_id=str(k)) for k in range(6)]
        for r in client.execute_batch(batch):
            assert [v.value for v in r.verdicts] == ["PASSED", "FAILED"], r
            assert r.compile_duration < first.compile_duration, r  # a copy, not a compile
    assert_no_leftovers(root=server.proc.pid)
