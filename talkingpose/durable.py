"""Writing files so that a crash, a kill or a full disk at any moment leaves either the old file or the new one.

Every file is first written under a temporary name unique to the writing process (its pid is in the name, so
two processes saving the same path never share one), flushed to the disk, and only then renamed into place;
the rename is atomic on POSIX file systems and on NTFS. A temporary file left by a process that was killed is
removed by the next save of the same path, once no process of that pid is alive.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, OSError):
        return True  # someone else's process, or we cannot tell: leave its file alone
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Deletes temporary files of `path` whose writing process is gone; returns them. Names are compared as
    text (no glob patterns), so names with `[`, `*` or `?` are handled like any other."""
    path = Path(path)
    prefix = _temporary_prefix(path)
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(TEMPORARY_SUFFIX)):
            continue
        pid_text = name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path.parent / name)
            removed.append(path.parent / name)
    return removed


def temporary_sibling(path: Path) -> Path:
    """A new, empty file next to `path` that only this call owns (`.NAME.PID.RANDOM.tmp`)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{_temporary_prefix(path)}{os.getpid()}.", suffix=TEMPORARY_SUFFIX)
    os.close(fd)
    return Path(name)


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(temporary: Path, path: Path) -> Path:
    """Flushes `temporary` to the disk and renames it to `path` (replacing it atomically)."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(Path(path).parent)
    return Path(path)


@contextlib.contextmanager
def replacing(path: Path):
    """`with replacing(path) as tmp:` write the new content to `tmp`; on a clean exit it becomes `path`, on any
    error (a full disk, Ctrl-C) it is deleted and `path` is left as it was."""
    path = Path(path)
    remove_stale_temporaries(path)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        commit(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_bytes(path: Path, data: bytes) -> Path:
    """Replaces `path` with `data` atomically and durably."""
    with replacing(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
    return Path(path)
