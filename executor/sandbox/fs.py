"""The worker's view of the file system, arranged inside its own mount namespace.

Everything becomes read-only; the server's own files (and other configured paths) are covered
by empty tmpfs mounts, with only the Python installation and the acecoder package put back;
/tmp, /var/tmp and /dev/shm become fresh root-owned tmpfs mounts; /proc is remounted for the
jail's pid namespace with other uids' processes hidden. Each request then gets a directory of
its own under /tmp: a fresh tmpfs owned by its program's uid, the only place it may write,
detached whole when the request ends (`make_job_dir`, `remove_job_dir`).
"""

from __future__ import annotations

import ctypes
import os
import stat

_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_MOVE = 0x2000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(src: str | None, dst: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if _libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount({src!r}, {dst!r}, {fstype!r}): {os.strerror(err)}")


def _mount_points() -> list[tuple[str, int]]:
    """(mount point, flags that must be kept on remount), deepest last."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            point = parts[4].replace("\\040", " ")
            opts = parts[5].split(",")
            flags = 0
            flags |= _MS_NOSUID if "nosuid" in opts else 0
            flags |= _MS_NODEV if "nodev" in opts else 0
            flags |= _MS_NOEXEC if "noexec" in opts else 0
            out.append((point, flags))
    return out


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def arrange(*, hide: list[str], keep: list[str], tmp_bytes: int = 256 << 20,
            tmp_inodes: int = 20000) -> None:
    """Make the file system read-only, cover `hide` (except `keep`), give fresh temp dirs.

    The writable /tmp is bounded (`tmp_bytes`, `tmp_inodes`): RLIMIT_FSIZE caps one file, this
    caps them all, so no program can fill memory with files."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    sealed = [d for d in ("/var/tmp", "/dev/shm", "/run/shm", "/run/lock")
              if os.path.isdir(d) and not os.path.islink(d)]
    covers = {os.path.realpath(h) for h in hide if os.path.isdir(h)} | {"/tmp", *sealed}
    covers -= {"/"}
    # A cover inside another cover is redundant (and would be hidden by it anyway).
    covers = {c for c in covers if not any(c != o and _within(c, o) for o in covers)}

    # Hold on to what must stay visible before anything is covered: an O_PATH descriptor keeps
    # the directory reachable (through /proc/self/fd) after its parent disappears.
    held: list[tuple[str, int]] = []
    for path in sorted({os.path.realpath(k) for k in keep if os.path.exists(k)}):
        if any(_within(path, c) for c in covers):
            held.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC)))

    for c in sorted(covers):
        size = f",size={tmp_bytes},nr_inodes={tmp_inodes}" if c == "/tmp" else ",size=1m"
        _mount("tmpfs", c, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755" + size)
    for path, fd in held:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "w").close()
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)

    # Fresh /proc for our pid namespace; other uids' processes are invisible.
    try:
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "hidepid=2")
    except OSError:
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)

    # Everything read-only but /tmp (a bind remount keeps the flags the kernel locked).
    for point, locked in _mount_points():
        if point.startswith("/proc") or point == "/tmp" or point.startswith("/dev/pts"):
            continue
        try:
            _mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | locked)
        except OSError:
            pass  # sysfs/cgroup mounts that refuse; our uids cannot write them anyway


_MNT_DETACH = 2


def make_job_dir(path: str, uid: int | None, *, size: int, inodes: int = 20000) -> bool:
    """Create the job's directory as a fresh tmpfs of its own, owned by `uid` (or, where
    mounting is not possible, a plain directory). Returns whether it is a mount."""
    os.mkdir(path, 0o700)
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    try:
        _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV,
               f"mode=0700,size={size},nr_inodes={inodes}{owner}")
        return True
    except OSError:
        if uid is not None:
            os.chown(path, uid, uid)
        return False


def make_holder(path: str, jobs: int, parked: str) -> bool:
    """Create a directory that holds up to `jobs` job directories, to be detached together
    (`remove_job_dir`): one detach waits for one RCU grace period however many mounts it
    takes with it. A fresh tmpfs of its own, root's, 0711: every uid may pass through it to
    its own job directory, none may list it; in it `parked`, root's alone (0700), where ended
    requests' directories wait (`park`). (Where mounting is not possible, a plain directory,
    and nothing is parked.) Returns whether it is a mount."""
    os.mkdir(path, 0o711)
    try:
        _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
               f"mode=0711,size=64k,nr_inodes={4 * jobs + 64}")
    except OSError:
        return False
    os.mkdir(os.path.join(path, parked), 0o700)
    return True


def park(path: str, room: str) -> str | None:
    """Move the mount at `path` (an ended request's directory) into `room` (a directory root's
    alone), under the same name, and remove the mount point it leaves. From then on no path a
    request's uid can walk leads to it, whatever its request wrote on it or in it (extended
    attributes and ACLs included): nothing of it needs to be looked at to keep it from later
    requests. Returns its new path; None if it could not be moved (it is still at `path`)."""
    dest = os.path.join(room, os.path.basename(path))
    try:
        os.mkdir(dest, 0o700)
    except OSError:
        return None
    try:
        _mount(path, dest, None, _MS_MOVE)
    except OSError:
        os.rmdir(dest)
        return None
    try:
        os.rmdir(path)
    except OSError:
        pass  # an empty directory of root's: it goes with the holder
    return dest


def blank(path: str) -> bool:
    """Whether a job directory (a tmpfs of its own) holds nothing that takes memory: no file,
    directory, link or user attribute, no byte in use (statvfs counts them all, open
    unlinked files included). Only such a parked directory may wait to be detached with
    others (`make_holder`): many waiting ones must not hold many requests' files."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_blocks == st.f_bfree and st.f_files - st.f_ffree <= 1  # (1: its root)


def seal(path: str) -> bool:
    """Make a job directory root's alone (0700): no request's uid can enter it any more, so it
    can be removed later. Returns whether it is sealed: never for what is not a directory (a
    symlink is not followed, whatever it points to)."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        os.chown(path, 0, 0, follow_symlinks=False)
        os.chmod(path, 0o700, follow_symlinks=False)
    except (OSError, NotImplementedError):  # (the latter: a symlink swapped in meanwhile)
        return False
    st = os.lstat(path)
    return st.st_uid == 0 and st.st_mode & 0o7777 == 0o700


def remove_job_dir(path: str, mounted: bool) -> None:
    """Remove a job directory whatever the program left in it. A mount is detached whole (what
    is left goes with the last reference to it); a plain directory is removed without
    recursion, so no depth of nesting can make this fail."""
    if mounted:
        if _libc.umount2(path.encode(), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"umount2({path!r}): {os.strerror(err)}")
        os.rmdir(path)
        return
    remove_tree(path)


def remove_tree(path: str) -> None:
    """rm -rf without recursion (an explicit stack of directory fds), so neither the depth of
    the tree nor the length of its paths matters."""
    try:
        root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    stack: list[tuple[int, str | None]] = [(root, None)]  # (dir fd, its name in the parent)
    while stack:
        fd, _ = stack[-1]
        descended = False
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    try:
                        child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                        dir_fd=fd)
                    except OSError:
                        continue
                    stack.append((child, entry.name))
                    descended = True
                    break
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    pass
        if descended:
            continue
        stack.pop()
        os.close(fd)
        name = _
        if stack and name is not None:
            os.rmdir(name, dir_fd=stack[-1][0])
    os.rmdir(path)
