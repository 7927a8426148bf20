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
