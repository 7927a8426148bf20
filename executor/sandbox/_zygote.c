/* The zygote's order loop in C (see procs.py, which has the same loop in Python).

   After each fork, the zygote and its new child share every page until one of them writes
   to it, and the first write to a shared page copies it: a few microseconds a page on a
   small VM. A loop in Python writes to a hundred pages or more between one fork and the next
   wait for an order (reference counts, frames, the objects of a message), and each is copied
   while the child lives. This loop writes to its stack and a few static bytes only, and
   returns to Python in the child alone.

   Orders (8 bytes: a letter, then a number) and replies, on a stream socket:
     'S' n     fork a child with spec n and the fds sent along -> 'S' pid (-1: not forked)
     'R' mask  collect children that have exited -> 'R' how many children of the specs in
               `mask` (bit n: spec n) are not collected yet
     'B' mask  wait for every child of the specs in `mask` to exit, and collect it -> 'B' 0
               (for children that have been killed: the wait ends as each becomes a zombie,
               where polling would sleep past it)
     'W' pid   wait for that child -> 'W' status, maxrss KiB, CPU seconds
   Anything else, or a closed socket, ends the zygote.

   A child of a spec the loop was given (procs.c_specs) confines itself here, as
   confine.confine does, before it returns to Python (each Python step of that would write to
   pages it shares with the zygote). A native spec's child never returns: it reads its job (a
   command line, its environment, directory and limits) from its own pipe and becomes the
   command (see procs.native_frame): a compiled program's run costs one fork and one exec, not
   a Python process's start besides. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FDS 8
#define KEPT 64
#define MAX_CHILDREN 256

struct ended {
    int32_t kind, status;
    int64_t maxrss;
    double cpu;
};

/* The last exit statuses collected without being asked for (as procs._reap_nowait keeps). */
static struct { int pid; struct ended e; } kept[KEPT];
static unsigned next_kept;

static struct ended describe(int status, const struct rusage *ru) {
    struct ended e = {'W', status, ru->ru_maxrss,
                      ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6
                      + ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6};
    return e;
}

/* Children not collected yet, with their spec. */
static struct { int pid, spec; } live[MAX_CHILDREN];

static int free_place(void) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (live[i].pid == 0)
            return i;
    return -1;
}

static void collected(int pid) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (live[i].pid == pid)
            live[i].pid = 0;
}

static int32_t count_live(int32_t mask) {
    int32_t n = 0;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (live[i].pid > 0 && live[i].spec >= 0 && live[i].spec < 31 && (mask >> live[i].spec) & 1)
            n++;
    return n;
}

static void keep(int pid, int status, const struct rusage *ru) {
    kept[next_kept % KEPT].pid = pid;
    kept[next_kept % KEPT].e = describe(status, ru);
    next_kept++;
}

/* Wait for each child of the specs in `mask` to exit, collecting it. */
static void collect_all(int32_t mask) {
    for (int i = 0; i < MAX_CHILDREN; i++) {
        int pid = live[i].pid, spec = live[i].spec;
        if (pid <= 0 || spec < 0 || spec >= 31 || !((mask >> spec) & 1))
            continue;
        int status, got;
        struct rusage ru;
        do
            got = wait4(pid, &status, 0, &ru);
        while (got < 0 && errno == EINTR);
        live[i].pid = 0;
        if (got == pid)
            keep(pid, status, &ru);
    }
}

static void reap_nowait(void) {
    for (;;) {
        int status;
        struct rusage ru;
        int pid = wait4(-1, &status, WNOHANG, &ru);
        if (pid <= 0)
            return;
        collected(pid);
        keep(pid, status, &ru);
    }
}

static void reply(int sock, const void *buf, size_t n) {
    while (n) {
        ssize_t k = send(sock, buf, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            _exit(0);
        buf = (const char *)buf + k;
        n -= (size_t)k;
    }
}

static struct ended wait_for(int pid) {
    struct ended e = {'W', 0, 0, 0.0};
    reap_nowait();
    for (int i = 0; i < KEPT; i++)
        if (pid > 0 && kept[i].pid == pid) {
            kept[i].pid = 0;
            return kept[i].e;
        }
    int status;
    struct rusage ru;
    int got;
    do
        got = wait4(pid, &status, 0, &ru);
    while (got < 0 && errno == EINTR);
    if (got != pid)
        return e;
    collected(pid);
    return describe(status, &ru);
}

/* -- native children ---------------------------------------------------------------------- */

#define MAX_SPECS 31
#define EXIT_LAUNCH 122  /* program.EXIT_LAUNCH: the command could not be started */
#define MAX_JOB (1 << 20)

/* What a spec fixes (nothing of any request): how its child places the fds it is sent, its
   working directory, uid (-1: keep) and ceilings, and whether it is native (execs a job). */
static struct spec {
    int used, native, root_cwd, nplace;
    int place[MAX_FDS];  /* fd i of the child: the sent fd place[i], or /dev/null where -1 */
    long long uid;
    rlim_t memory, cpu, file, open_files, processes;
} specs[MAX_SPECS];

extern char **environ;

static void say(const char *what, int err) {
    char line[512];
    int n = snprintf(line, sizeof line, "acecoder: %s: %s\n", what, strerror(err));
    if (n > 0 && write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0)
        _exit(EXIT_LAUNCH);
}

static void fail(const char *what) {
    say(what, errno);
    _exit(EXIT_LAUNCH);
}

static void limit(int resource, rlim_t value, const char *what) {
    struct rlimit r = {value, value};
    if (setrlimit(resource, &r) != 0)
        fail(what);
}

static void read_exactly(int fd, char *buf, size_t n) {
    while (n) {
        ssize_t k = read(fd, buf, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            errno = k == 0 ? EPROTO : errno;
            fail("reading the job");
        }
        buf += k;
        n -= (size_t)k;
    }
}

/* In a freshly forked child, holding the fds it was sent: what confine.confine does, in the
   same order. Its own session; fd i is the sent fd place[i] (or /dev/null), no other fd is
   open; the ceilings as rlimits, no core; its uid with no groups; not dumpable; killed with
   the zygote (asked for after the change of uid, which clears it; if the zygote died before,
   so does the child). A failure ends the child with EXIT_LAUNCH, never returns to the loop. */
static void confine_child(const struct spec *s, const int *fds, int nfds, int sock) {
    pid_t parent = getppid();
    close(sock);
    if (setsid() < 0)
        fail("setsid");
    int devnull = -1, high[MAX_FDS];
    for (int i = 0; i < s->nplace; i++) {
        int from = s->place[i];
        if (from >= nfds) {
            errno = EBADF;
            fail("a child was sent fewer fds than its spec places");
        }
        if (from < 0 && devnull < 0 && (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
            fail("opening /dev/null");
        if ((high[i] = fcntl(from < 0 ? devnull : fds[from], F_DUPFD, 100)) < 0)
            fail("placing fds");
    }
    for (int i = 0; i < s->nplace; i++)
        if (dup2(high[i], i) < 0)
            fail("placing fds");
    if (syscall(SYS_close_range, (unsigned)s->nplace, ~0U, 0) != 0)
        for (int fd = s->nplace; fd < 65536; fd++)
            close(fd);
    if (s->root_cwd && chdir("/") != 0)
        fail("chdir");
    limit(RLIMIT_AS, s->memory, "RLIMIT_AS");
    limit(RLIMIT_CPU, s->cpu, "RLIMIT_CPU");
    limit(RLIMIT_FSIZE, s->file, "RLIMIT_FSIZE");
    limit(RLIMIT_NOFILE, s->open_files, "RLIMIT_NOFILE");
    limit(RLIMIT_NPROC, s->processes, "RLIMIT_NPROC");
    limit(RLIMIT_CORE, 0, "RLIMIT_CORE");
    if (s->uid >= 0) {
        uid_t uid = (uid_t)s->uid;
        if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0
            || setresuid(uid, uid, uid) != 0)
            fail("dropping to the child's uid");
    }
    /* Not dumpable: no other process of the uid may read its memory or open its fds. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        fail("prctl");
    if (getppid() != parent)
        _exit(0);
}

/* The job (procs.native_frame): "ACN1", the body's length, then the memory limit, CPU seconds,
   whether the memory limit is RLIMIT_DATA (else RLIMIT_AS), argc, envc; the body is the
   working directory, argv and the environment's "KEY=value" entries, each ended by a NUL. */
struct job_head {
    char magic[4];
    uint32_t size;
    int64_t memory, cpu;
    int32_t data_memory, argc, envc;
} __attribute__((packed));

/* In a freshly forked child of a native spec, confined (its fds: stdin, stdout, stderr, the
   job): read the job, exec. Never returns. */
static void become_native(void) {
    struct job_head head;
    read_exactly(3, (char *)&head, sizeof head);
    if (memcmp(head.magic, "ACN1", 4) != 0 || head.size > MAX_JOB || head.argc < 1
        || head.envc < 0 || head.argc > MAX_JOB || head.envc > MAX_JOB) {
        errno = EPROTO;
        fail("a malformed job");
    }
    char *body = malloc((size_t)head.size + 1);
    char **argv = calloc((size_t)head.argc + 1, sizeof *argv);
    if (body == NULL || argv == NULL)
        fail("reading the job");
    read_exactly(3, body, head.size);
    close(3);
    body[head.size] = '\0';
    /* cwd, argv..., env...: exactly 1 + argc + envc strings, each ended by a NUL */
    char *at = body, *end = body + head.size, *cwd = NULL;
    for (long i = 0; i < 1L + head.argc + head.envc; i++) {
        char *nul = at < end ? memchr(at, '\0', (size_t)(end - at)) : NULL;
        if (nul == NULL) {
            errno = EPROTO;
            fail("a malformed job");
        }
        if (i == 0)
            cwd = at;
        else if (i <= head.argc)
            argv[i - 1] = at;
        else if (putenv(at) != 0)
            fail("setting the environment");
        at = nul + 1;
    }
    limit(head.data_memory ? RLIMIT_DATA : RLIMIT_AS, (rlim_t)head.memory, "the memory limit");
    limit(RLIMIT_CPU, (rlim_t)head.cpu, "the CPU limit");
    if (chdir(cwd) != 0)
        fail("chdir");
    execve(argv[0], argv, environ);
    say(argv[0], errno);
    _exit(EXIT_LAUNCH);
}

static int read_specs(PyObject *given) {
    if (given == Py_None)
        return 0;
    if (!PyDict_Check(given)) {
        PyErr_SetString(PyExc_TypeError, "specs: a dict of spec number -> what it fixes");
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(given, &pos, &key, &value)) {
        long which = PyLong_AsLong(key);
        struct spec s;
        memset(&s, 0, sizeof s);
        s.used = 1;
        if (which == -1 && PyErr_Occurred())
            return -1;
        if (which < 0 || which >= MAX_SPECS) {
            PyErr_SetString(PyExc_ValueError, "specs: a spec number out of range");
            return -1;
        }
        unsigned long long memory, cpu, file, open_files, processes;
        PyObject *place;
        if (!PyArg_ParseTuple(value, "pLKKKKKO!p", &s.native, &s.uid, &memory, &cpu, &file,
                              &open_files, &processes, &PyTuple_Type, &place, &s.root_cwd))
            return -1;
        Py_ssize_t n = PyTuple_GET_SIZE(place);
        if (n > MAX_FDS || (s.native && n != 4)) {
            PyErr_SetString(PyExc_ValueError, "specs: too many fds placed (a native child: 4)");
            return -1;
        }
        s.nplace = (int)n;
        for (Py_ssize_t i = 0; i < n; i++) {
            long from = PyLong_AsLong(PyTuple_GET_ITEM(place, i));
            if (from == -1 && PyErr_Occurred())
                return -1;
            if (from < -1 || from >= MAX_FDS) {
                PyErr_SetString(PyExc_ValueError, "specs: a placed fd out of range");
                return -1;
            }
            s.place[i] = (int)from;
        }
        s.memory = memory, s.cpu = cpu, s.file = file, s.open_files = open_files;
        s.processes = processes;
        specs[which] = s;
    }
    return 0;
}

/* serve(sock, specs) -> (spec number, fds): returns only in a freshly forked child of a spec
   that is not native: confined here where `specs` has its spec (fds None: they are placed),
   else holding the fds it was sent (a list). */
static PyObject *serve(PyObject *self, PyObject *args) {
    int sock;
    PyObject *given = Py_None;
    if (!PyArg_ParseTuple(args, "i|O", &sock, &given) || read_specs(given) != 0)
        return NULL;
    for (;;) {
        int32_t order[2];
        int fds[MAX_FDS];
        int nfds = 0;
        union {
            char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
            struct cmsghdr align;
        } control;
        struct iovec iov = {order, sizeof order};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        ssize_t got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
        if (got < 0 && errno == EINTR)
            continue;
        if (got != (ssize_t)sizeof order)
            _exit(0);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < n && nfds < MAX_FDS; i++)
                memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
        if (order[0] == 'S') {
            reap_nowait();
            int place = free_place(), pid = -1;
            if (place >= 0)  /* else no fork: every child is counted */
                pid = fork();
            const struct spec *spec = order[1] >= 0 && order[1] < MAX_SPECS
                                      && specs[order[1]].used ? &specs[order[1]] : NULL;
            if (pid == 0 && spec != NULL) {
                confine_child(spec, fds, nfds, sock);
                if (spec->native)
                    become_native();
                /* worker.SPARE_NAME: it holds nothing of any request until it reads its job */
                prctl(PR_SET_NAME, "acecoder-spare", 0, 0, 0);
                return Py_BuildValue("(iO)", (int)order[1], Py_None);
            }
            if (pid == 0) {
                PyObject *list = PyList_New(nfds);
                if (list == NULL)
                    return NULL;
                for (int i = 0; i < nfds; i++) {
                    PyObject *fd = PyLong_FromLong(fds[i]);
                    if (fd == NULL) {
                        Py_DECREF(list);
                        return NULL;
                    }
                    PyList_SET_ITEM(list, i, fd);
                }
                return Py_BuildValue("(iN)", (int)order[1], list);
            }
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
            if (pid > 0) {
                live[place].pid = pid;
                live[place].spec = order[1];
            }
            int32_t answer[2] = {'S', pid};  /* -1: not forked; the worker raises */
            reply(sock, answer, sizeof answer);
            continue;
        }
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        if (order[0] == 'R') {
            reap_nowait();
            int32_t answer[2] = {'R', count_live(order[1])};
            reply(sock, answer, sizeof answer);
        } else if (order[0] == 'B') {
            collect_all(order[1]);
            int32_t answer[2] = {'B', 0};
            reply(sock, answer, sizeof answer);
        } else if (order[0] == 'W') {
            struct ended e = wait_for(order[1]);
            reply(sock, &e, sizeof e);
        } else {
            _exit(0);
        }
    }
}

/* set_name(name): the calling process's name (comm), as /proc and ps show it (at most 15
   bytes are kept). A plain C call: through ctypes, a fresh child would first write to dozens
   of the pages it shares with its zygote. */
static PyObject *set_name(PyObject *self, PyObject *arg) {
    char name[16];
    char *data;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &data, &n) != 0)
        return NULL;
    if (n > 15)
        n = 15;
    memcpy(name, data, (size_t)n);
    name[n] = '\0';
    if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_name", set_name, METH_O,
     "set_name(name: bytes): the process's name (comm); at most 15 bytes are kept."},
    {"serve", serve, METH_VARARGS,
     "serve(sock, specs=None) -> (spec, fds): fork children on the orders read from the socket "
     "`sock`; returns only in a child. A child of a spec in `specs` ({spec: (native, uid, "
     "memory, cpu, file, open_files, processes, place, root_cwd)}) is confined first (fds "
     "None); a native one never returns: it execs its job's command."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_zygote", NULL, -1, methods};

PyMODINIT_FUNC PyInit__zygote(void) { return PyModule_Create(&module); }
