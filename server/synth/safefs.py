"""Job files opened below one directory with no symbolic link followed, checked at every open.

A job's paths are checked when it is submitted, but the files are opened later (when it runs,
after a restart, at the end for a Parquet output), and whoever else can write in the data
directory may plant a link in between. So a `Root` opens its directory once, and each open of
a `JobPath` walks the path from that descriptor one component at a time with ``O_NOFOLLOW``,
creating what is missing; the last component must then be a regular file, and one opened for
writing must have no other hard link. Renames and removals act on the entry itself
(``renameat``, ``unlinkat``), never on what a link points to.

`JobPath` has the few pathlib methods the job code and `acecoder.jsonl` call (``open``,
``exists``, ``stat``, ``read_text``, ``unlink``, ``replace``, ``mkdir``, ``name``, ``suffix``,
``parent``, ``with_name``), so the same code runs on a plain `Path` for the command line and on
a `JobPath` in the server. It has no ``__fspath__``: code that would open it by name (``open(p)``,
``os.stat(p)``) fails with TypeError instead of following links.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

MAX_PATH_BYTES = 4096
"""The longest path a client may give (Linux's PATH_MAX)."""
MAX_NAME_BYTES = 255
"""The longest name of one path component (Linux's NAME_MAX)."""

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MODES = {
    "r": os.O_RDONLY, "rb": os.O_RDONLY, "r+b": os.O_RDWR,
    "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "ab": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
    # truncated only once the file is known to be ours (O_TRUNC would cut a hard link first)
    "w": os.O_WRONLY | os.O_CREAT, "wb": os.O_WRONLY | os.O_CREAT,
}


class UnsafeFile(Exception):
    """A job file is a symbolic link (or sits below one), is not a regular file, or has another
    hard link: the job does not open it. The message names the path and the reason."""


class FilePath(Protocol):
    """What the job code needs of a path: a `pathlib.Path` or a `JobPath`."""

    @property
    def name(self) -> str: ...
    @property
    def suffix(self) -> str: ...
    @property
    def parent(self) -> FilePath: ...
    def with_name(self, name: str) -> FilePath: ...
    # `mode` has no default here: the overload of Path.open that takes any str has none.
    def open(self, mode: str, buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None) -> IO[Any]: ...
    def exists(self) -> bool: ...
    def stat(self) -> os.stat_result: ...
    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str: ...
    def unlink(self, missing_ok: bool = False) -> None: ...
    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None: ...
    def replace(self, target: Any) -> Any: ...


class Root:
    """A directory opened once; `path` names the files below it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def path(self, relative: str | PurePosixPath) -> JobPath:
        """The file `relative` (to the root) names; '..', '.' and absolute paths are refused."""
        parts = PurePosixPath(relative).parts
        if PurePosixPath(relative).is_absolute() or ".." in parts:
            raise ValueError(f"{relative!s} is not a path below {self.directory}")
        return JobPath(self, parts)

    def names(self) -> list[str]:
        """The entries of the root directory itself."""
        return os.listdir(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class JobPath:
    """A path below a `Root`; every method walks it from the root with no link followed."""

    __slots__ = ("root", "parts")

    def __init__(self, root: Root, parts: tuple[str, ...]) -> None:
        self.root = root
        self.parts = parts

    def __str__(self) -> str:
        return str(self.root.directory.joinpath(*self.parts))

    def __repr__(self) -> str:
        return f"JobPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobPath) and (other.root, other.parts) == (self.root, self.parts)

    def __hash__(self) -> int:
        return hash((id(self.root), self.parts))

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> JobPath:
        return JobPath(self.root, self.parts[:-1])

    def with_name(self, name: str) -> JobPath:
        if not self.parts or not name or "/" in name or name in (".", ".."):
            raise ValueError(f"cannot name {self} {name!r}")
        return JobPath(self.root, self.parts[:-1] + (name,))

    # -- walking

    def _walk(self, parts: tuple[str, ...], create: bool) -> int:
        """A descriptor of the directory `parts` name (the caller closes it); with `create`,
        the missing ones are made."""
        fd = os.dup(self.root.fd)
        try:
            for k, name in enumerate(parts):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o777, dir_fd=fd)
                try:
                    below = os.open(name, _DIR, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    where = self.root.directory.joinpath(*parts[:k + 1])
                    raise UnsafeFile(f"{self}: {where} is {_what(name, fd)}, not a directory; "
                                     "the job opens nothing through a link") from None
                os.close(fd)
                fd = below
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _parent_fd(self, create: bool = False) -> Iterator[int]:
        if not self.parts:
            raise ValueError(f"{self} is the root itself, not a file below it")
        fd = self._walk(self.parts[:-1], create)
        try:
            yield fd
        finally:
            os.close(fd)

    # -- files

    def open(self, mode: str = "r", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None) -> IO[Any]:
        """Like `Path.open` for the modes the jobs use (r, rb, r+b, a, ab, w, wb); a link, a
        non-regular file, or (for writing) a file with another hard link is UnsafeFile."""
        if mode not in _MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(_MODES)}")
        flags = _MODES[mode] | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
        writing = mode != "r" and mode != "rb"
        with self._parent_fd(create=bool(flags & os.O_CREAT)) as parent:
            try:
                fd = os.open(self.name, flags, 0o666, dir_fd=parent)
            except OSError as exc:
                # ELOOP: a link; ENXIO: a FIFO with no reader (O_NONBLOCK keeps it from hanging)
                if exc.errno not in (errno.ELOOP, errno.ENXIO):
                    raise
                raise UnsafeFile(f"{self} is {_what(self.name, parent)}, not a regular file; "
                                 "the job does not open it") from None
        try:
            self._check(os.fstat(fd), writing)
            os.set_blocking(fd, True)
            if mode in ("w", "wb"):
                os.ftruncate(fd, 0)
            return io.open(fd, mode, buffering, encoding, errors, newline)
        except BaseException:
            os.close(fd)
            raise

    def exists(self) -> bool:
        """Whether the entry exists (a link counts: opening it is what refuses it)."""
        try:
            self.stat()
        except FileNotFoundError:
            return False
        return True

    def stat(self) -> os.stat_result:
        """The entry's own status (a link's, not its target's)."""
        with self._parent_fd() as parent:
            return os.stat(self.name, dir_fd=parent, follow_symlinks=False)

    def regular(self, *, writing: bool = False) -> bool:
        """Whether the file exists: False when it (or a directory above it) does not;
        UnsafeFile when it is a link, below one, not a regular file, or (`writing`) has
        another hard link, as `open` would find."""
        try:
            st = self.stat()
        except FileNotFoundError:
            return False
        self._check(st, writing)
        return True

    def _check(self, st: os.stat_result, writing: bool) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{self} is {_kind(st.st_mode)}, not a regular file; the job does "
                             "not open it")
        if writing and st.st_nlink > 1:
            raise UnsafeFile(f"{self} has {st.st_nlink - 1} other hard link(s); the job does "
                             "not write a file that is also elsewhere")

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        with self.open("r", encoding=encoding, errors=errors) as f:
            return str(f.read())

    def unlink(self, missing_ok: bool = False) -> None:
        with self._parent_fd() as parent:
            try:
                os.unlink(self.name, dir_fd=parent)
            except FileNotFoundError:
                if not missing_ok:
                    raise

    def replace(self, target: JobPath) -> JobPath:
        """Rename this file over `target` atomically (a link at `target` is replaced itself)."""
        if target.root is not self.root:
            raise ValueError(f"{self} and {target} are below different roots")
        with self._parent_fd() as src, target._parent_fd() as dst:
            os.replace(self.name, target.name, src_dir_fd=src, dst_dir_fd=dst)
        return target

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Make this directory (and, with `parents`, those above it), through no link."""
        if not self.parts:
            if not exist_ok:
                raise FileExistsError(errno.EEXIST, "the root exists", str(self))
            return
        with self._parent_fd(create=parents) as parent:
            try:
                os.mkdir(self.name, mode, dir_fd=parent)
            except FileExistsError:
                if not exist_ok:
                    raise
            os.close(self._walk(self.parts, create=False))  # refuses a link in its place


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a regular file"


def _what(name: str, dir_fd: int) -> str:
    try:
        return _kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return "gone"


def temporary_path(output: FilePath) -> FilePath:
    """Where `finish` writes a Parquet output before renaming it into place."""
    return output.with_name(output.name + ".tmp")


def finish(output: FilePath) -> None:
    """`acecoder.jsonl.finish` with every file opened through its path object: for a `.parquet`
    output, write it from the staged JSONL to a temporary file, rename that into place, and
    drop the staging file. Nothing to do for JSONL outputs."""
    from acecoder.jsonl import staging_path

    staged: FilePath = staging_path(output)  # type: ignore[arg-type]
    if staged == output or not staged.exists():
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in staged.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    tmp = temporary_path(output)
    with tmp.open("wb") as f:
        pq.write_table(pa.Table.from_pylist(rows), f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(output)
    staged.unlink()
