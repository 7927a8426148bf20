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
     'W' pid   wait for that child -> 'W' status, maxrss KiB, CPU seconds
   Anything else, or a closed socket, ends the zygote. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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

static void reap_nowait(void) {
    for (;;) {
        int status;
        struct rusage ru;
        int pid = wait4(-1, &status, WNOHANG, &ru);
        if (pid <= 0)
            return;
        collected(pid);
        kept[next_kept % KEPT].pid = pid;
        kept[next_kept % KEPT].e = describe(status, &ru);
        next_kept++;
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

/* serve(sock) -> (spec number, [fds]): returns only in a freshly forked child. */
static PyObject *serve(PyObject *self, PyObject *arg) {
    int sock = PyLong_AsLong(arg);
    if (sock == -1 && PyErr_Occurred())
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
        } else if (order[0] == 'W') {
            struct ended e = wait_for(order[1]);
            reply(sock, &e, sizeof e);
        } else {
            _exit(0);
        }
    }
}

static PyMethodDef methods[] = {
    {"serve", serve, METH_O,
     "serve(sock) -> (spec, fds): fork children on the orders read from the socket `sock`; "
     "returns only in a child."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_zygote", NULL, -1, methods};

PyMODINIT_FUNC PyInit__zygote(void) { return PyModule_Create(&module); }
