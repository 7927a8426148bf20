"""Removing what a request left behind never fails, whatever its shape."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from acecoder.executor.sandbox import fs


def test_remove_tree_handles_any_depth_and_path_length(tmp_path: Path) -> None:
    root = tmp_path / "job"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for i in range(sys.getrecursionlimit() * 3):  # deeper than any recursive walk could go
        os.mkdir("d" * 200, dir_fd=fd)
        nxt = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
        if i % 500 == 0:
            os.symlink("/etc/passwd", "link", dir_fd=fd)  # removed, never followed
    os.close(fd)
    (root / "unreadable").mkdir()
    (root / "unreadable" / "f").write_text("x")
    (root / "unreadable").chmod(0)
    fs.remove_tree(str(root))
    assert not root.exists() and Path("/etc/passwd").exists()
    fs.remove_tree(str(root))  # already gone: nothing to do


def test_remove_job_dir_of_a_plain_directory(tmp_path: Path) -> None:
    d = tmp_path / "plain"
    d.mkdir()
    (d / "a").mkdir()
    (d / "a" / "b").write_text("x")
    fs.remove_job_dir(str(d), mounted=False)
    assert not d.exists()


def test_a_sealed_job_directory_is_closed_to_its_owner(tmp_path: Path) -> None:
    """seal: root's alone, 0700, whatever modes the request left on it and inside it: its
    program uid can no longer list, open, change or rename anything through it."""
    uid = 61990
    d = tmp_path / "job"
    d.mkdir()
    os.chown(tmp_path, 0, 0)
    tmp_path.chmod(0o755)
    (d / "open").mkdir()
    (d / "secret").write_text("s3cret")
    for p in (d, d / "open", d / "secret"):
        os.chown(p, uid, uid)
        p.chmod(0o777)
    assert fs.seal(str(d))
    assert (d.stat().st_uid, d.stat().st_mode & 0o7777) == (0, 0o700)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # as the request's uid
        os.close(r)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        reached = []
        for what, attempt in (("list", lambda: os.listdir(d)),
                              ("read", lambda: (d / "secret").read_text()),
                              ("enter", lambda: os.listdir(d / "open")),
                              ("chmod", lambda: os.chmod(d, 0o777)),
                              ("chown", lambda: os.chown(d, uid, uid)),
                              ("rename", lambda: os.rename(d, tmp_path / "mine"))):
            try:
                attempt()
                reached.append(what)
            except OSError:
                pass
        os.write(w, ",".join(reached).encode())
        os._exit(0)
    os.close(w)
    reached = os.read(r, 1024).decode()
    os.waitpid(pid, 0)
    assert reached == ""
    assert (d / "secret").read_text() == "s3cret"  # root still removes it (remove_job_dir)


def test_seal_refuses_what_is_not_a_directory_it_can_own(tmp_path: Path) -> None:
    assert not fs.seal(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    os.chmod(tmp_path / "file", 0o666)
    assert not fs.seal(str(tmp_path / "file"))
    assert (tmp_path / "file").stat().st_mode & 0o777 == 0o666
    target = tmp_path / "target"
    target.mkdir()
    os.chmod(target, 0o777)
    (tmp_path / "link").symlink_to(target)
    assert not fs.seal(str(tmp_path / "link"))  # neither the link nor what it points to
    assert target.stat().st_mode & 0o777 == 0o777


def _in_own_mount_namespace(body) -> str:  # type: ignore[no-untyped-def]
    """Run `body()` (returns a str) in a child with a private mount namespace; its answer."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.unshare(0x00020000) == 0  # CLONE_NEWNS
            assert libc.mount(None, b"/", None, 0x4000 | 0x40000, None) == 0  # rec, private
            answer = body()
        except BaseException as exc:  # noqa: BLE001
            answer = f"raised {exc!r}"
        os.write(w, answer.encode())
        os._exit(0)
    os.close(w)
    answer = os.read(r, 1 << 16).decode()
    os.waitpid(pid, 0)
    return answer


def test_a_blank_job_directory_is_told_from_any_that_holds_something(tmp_path: Path) -> None:
    """blank: a job tmpfs that holds nothing taking memory (no file, directory, link, user
    attribute or byte in use, open unlinked files included); a holder is a tmpfs root may
    list and others may only pass through, with a room only root may walk."""
    def body() -> str:
        holder = str(tmp_path / "h")
        assert fs.make_holder(holder, 16, "parked")
        st = os.stat(holder)
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o711)
        st = os.stat(f"{holder}/parked")
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700)
        job = f"{holder}/1"
        assert fs.make_job_dir(job, 61990, size=1 << 20)
        seen = []

        def check(what: str) -> None:
            seen.append(f"{what}={fs.blank(job)}")

        check("fresh")
        with open(f"{job}/f", "w") as f:
            f.write("x")
        check("file")
        os.unlink(f"{job}/f")
        check("deleted")
        os.mkdir(f"{job}/d")
        check("dir")
        os.rmdir(f"{job}/d")
        os.symlink("target", f"{job}/l")
        check("link")
        os.unlink(f"{job}/l")
        os.setxattr(job, "user.k", b"v")
        check("xattr")
        os.removexattr(job, "user.k")
        fd = os.open(f"{job}/u", os.O_CREAT | os.O_WRONLY)
        os.unlink(f"{job}/u")
        os.write(fd, b"y" * 5000)
        check("unlinked-open")
        os.close(fd)
        check("closed")
        fs.remove_job_dir(holder, True)  # with the job directory in it
        assert not os.path.exists(holder)
        return " ".join(seen)

    assert _in_own_mount_namespace(body) == (
        "fresh=True file=False deleted=True dir=False link=False xattr=False "
        "unlinked-open=False closed=True")


def test_a_parked_job_directory_is_out_of_every_uid_s_reach(tmp_path: Path) -> None:
    """park: the mount moves, whole, into the room; where it was nothing is left; from its
    former owner's uid (and any other) neither path reaches it, nor anything written on it."""
    uid = 61990

    def body() -> str:
        holder = str(tmp_path / "h")
        assert fs.make_holder(holder, 16, "parked")
        job = f"{holder}/7"
        assert fs.make_job_dir(job, uid, size=1 << 20)
        with open(f"{job}/kept", "w") as f:
            f.write("s3cret")
        os.setxattr(job, "user.secret", b"s3cret")
        assert fs.seal(job)
        parked = fs.park(job, f"{holder}/parked")
        assert parked == f"{holder}/parked/7"
        assert not os.path.exists(job)
        assert os.path.ismount(parked) and open(f"{parked}/kept").read() == "s3cret"
        assert fs.park(job, f"{holder}/parked") is None  # nothing there any more
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            reached = []
            for p in (job, parked, f"{parked}/kept"):
                for what in (os.stat, os.listxattr, os.listdir, lambda p: open(p).read(),
                             lambda p: os.getxattr(p, "user.secret")):
                    try:
                        what(p)
                        reached.append(p)
                    except OSError:
                        pass
            os.write(w, repr(reached).encode())
            os._exit(0)
        os.close(w)
        answer = os.read(r, 1 << 16).decode()
        os.waitpid(pid, 0)
        fs.remove_job_dir(parked, True)
        assert not os.path.exists(parked)
        return answer

    assert _in_own_mount_namespace(body) == "[]"
