"""Atomic, durable writes: nothing half-written is ever visible, a failure or a kill (SIGKILL, at any
moment) leaves the target as it was, and what was written survives a crash of the machine.

A folder is written into a temporary folder beside its target (same file system, so a rename moves
it), every file and the folder itself are fsynced, and then it takes the target's place in one
rename:

- on Linux ``renameat2(RENAME_EXCHANGE)`` swaps the two folders atomically: a reader (or a process
  started after a kill) sees the whole old folder or the whole new one, never neither; the old one,
  now under the temporary name, is deleted afterwards;
- where the kernel or file system lacks it, the old folder is first renamed aside
  (``.<name>.old-<pid>-<random>``) and the new one renamed into place: a kill between the two
  renames leaves no target but the complete old folder beside it, which the next `atomic_folder`
  on that target renames back before it writes (`recover`).

``os.replace`` of a folder onto a non-empty folder fails on POSIX, hence the exchange rather than
versioned folders and a pointer file: the target stays a plain folder that users pass around.

Temporary folders are named ``.<name>.tmp-<pid>-<random>``; one left by a killed process (its pid no
longer running) is removed by the next write of the same target.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_file", "atomic_folder", "fsync_tree", "pid_alive", "recover"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except (IsADirectoryError, PermissionError):  # Windows cannot open a folder to fsync it
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a folder; the files are synced
        if not directory or exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file under ``folder``, then every folder (deepest first), so that their contents
    and names are on disk before the folder is renamed into place."""
    folders = [folder]
    for root, dirs, files in os.walk(folder):
        for name in files:
            _fsync_path(Path(root) / name)
        folders.extend(Path(root) / d for d in dirs)
    for path in reversed(folders):
        _fsync_path(path, directory=True)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "renameat2") else None  # glibc >= 2.28


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the names ``a`` and ``b`` (both exist); False where the system cannot."""
    libc = _libc()
    if libc is None:
        return False
    result = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):  # not on this file system
        return False
    raise OSError(code, os.strerror(code), str(b))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (on this machine; one we may not signal counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(target: Path, kind: str) -> list[Path]:
    """Folders ``.<name>.<kind>-<pid>-<random>`` beside ``target`` whose writer is no longer running."""
    found = []
    for path in target.parent.glob(f".{target.name}.{kind}-*"):
        pid = path.name[len(f".{target.name}.{kind}-"):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            found.append(path)
    return found


def recover(target: Path, *, clean: bool = True) -> None:
    """Undo what a killed `atomic_folder` left beside ``target``: put a complete old folder back
    where the target is missing (killed between the two renames of the fallback), and (``clean``)
    delete temporary folders of writers that are no longer running."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    old = sorted(_leftovers(target, "old"), key=lambda p: p.stat().st_mtime)
    if old and not target.exists():
        os.rename(old[-1], target)
        _fsync_path(target.parent, directory=True)
        old = old[:-1]
    if not clean:
        return
    for path in [*old, *_leftovers(target, "tmp")]:
        shutil.rmtree(path, ignore_errors=True)


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it becomes ``target``.

    A reader, or a process started after this one was killed at any moment, sees the old folder or
    the new one, complete, never a mix. On an exception the temporary folder is removed and
    ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    temp = _sibling(target, "tmp")
    temp.mkdir()
    try:
        yield temp
        fsync_tree(temp)
        if not target.exists():
            os.rename(temp, target)  # onto nothing, or onto an empty folder: one atomic step
        elif _exchange(temp, target):
            pass  # temp now holds the old folder, deleted below
        else:
            old = _sibling(target, "old")
            os.rename(target, old)
            os.rename(temp, target)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_path(target.parent, directory=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is fsynced and replaces ``target``
    (``os.replace`` of a file is atomic)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.part"
    try:
        yield temp
        _fsync_path(temp)
        os.replace(temp, target)
        _fsync_path(target.parent, directory=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
