"""Removing what a request left behind never fails, whatever its shape."""

from __future__ import annotations

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
