"""Writing files so that a crash, a kill or a full disk at any moment leaves either the old file or the new one.

Every file is first written under a temporary name unique to the writing process (its pid is in the name, so
two processes saving the same path never share one), flushed to the disk, and only then renamed into place;
the rename is atomic on POSIX file systems and on NTFS. A temporary file left by a process that was killed is
removed by the next save of the same path, once no process of that pid is alive. The temporary file is created
exclusively (`O_EXCL`), so a link planted under any name in the folder is never followed; every file of the
engine and the nodes that must survive a crash is written here (tests/test_reliability.py checks that no other
module renames a file into place).

A save that must not replace a file the user did not ask to replace passes `replace=False`: it then stops with
`FileExistsError`, leaving both the existing file and nothing of its own.

On Windows a file another program has open (a video player, ComfyUI's preview, an antivirus scan) cannot be
replaced: the rename is retried for a few seconds, then the new content is kept next to the file under a name
the error gives, and the old file is left as it was.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import os
import tempfile
import time
from pathlib import Path

import psutil

from .errors import TalkingPoseError

TEMPORARY_SUFFIX = ".tmp"
# How long a rename onto a file that another program holds open is retried (an antivirus scan lets go within a
# second or two; a player does not until it is closed), and the pauses between tries.
REPLACE_RETRY_SECONDS = 3.0
_REPLACE_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _pid_alive(pid: int) -> bool:
    # Only looks: psutil reads the process table (/proc, OpenProcess on Windows). os.kill(pid, 0), the POSIX way
    # to ask, terminates the process on Windows, and so would kill whatever program now has the pid written in an
    # old temporary file's name.
    if pid == os.getpid():
        return True
    try:
        psutil.Process(pid)
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, OverflowError, ValueError, OSError):
        return True  # someone else's process, or we cannot tell: leave its file alone
    return True


def _without_extension(name: str) -> str:
    """`.NAME.PID.RANDOM.tmp.EXT` (a temporary that keeps its file type for a loader's check) -> `….tmp`."""
    if name.endswith(TEMPORARY_SUFFIX):
        return name
    stem, _, _ = name.rpartition(".")
    return stem if stem.endswith(TEMPORARY_SUFFIX) else name


def _writer_pid(name: str, prefix: str) -> int | None:
    """The pid in a temporary file name `PREFIX PID.RANDOM.tmp` (or `….tmp.EXT`), or None if the name is not one."""
    name = _without_extension(name)
    if not (name.startswith(prefix) and name.endswith(TEMPORARY_SUFFIX)):
        return None
    pid_text = name[len(prefix):].split(".", 1)[0]
    return int(pid_text) if pid_text.isdigit() else None


def _remove_dead(folder: Path, prefix_of) -> list[Path]:
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        pid = _writer_pid(name, prefix_of(name))
        if pid is None or _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            os.unlink(folder / name)
            removed.append(folder / name)
    return removed


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Deletes temporary files of `path` whose writing process is gone; returns them. Names are compared as
    text (no glob patterns), so names with `[`, `*` or `?` are handled like any other."""
    path = Path(path)
    return _remove_dead(path.parent, lambda name: _temporary_prefix(path))


def remove_stale_temporaries_in(folder: Path) -> list[Path]:
    """Deletes the temporary files of every file in `folder` whose writing process is gone."""
    def prefix_of(name: str) -> str:
        # `.NAME.PID.RANDOM.tmp`: NAME may itself hold dots, the last three parts never do
        parts = _without_extension(name).rsplit(".", 3)
        return parts[0] + "." if len(parts) == 4 and name.startswith(".") else name
    return _remove_dead(Path(folder), prefix_of)


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()  # read once: os.umask can only be read by setting it, which is not thread-safe


def _final_mode(path: Path) -> int:
    """The permissions the finished file gets: those of the file it replaces, else what a plain `open` would
    give (0o666 less the umask). mkstemp makes its files private (0o600), which would leave every video, state
    and adapter unreadable to the other users of a shared machine or a server running ComfyUI as another user."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_UMASK


def temporary_sibling(path: Path, keep_extension: bool = False) -> Path:
    """A new, empty file next to `path` that only this call owns (`.NAME.PID.RANDOM.tmp`), with the permissions
    the finished file is to have. `keep_extension` ends the name in `path`'s extension too (`….tmp.safetensors`),
    for content that a loader recognises by it and that is checked before it is kept."""
    path = Path(path)
    suffix = TEMPORARY_SUFFIX + (path.suffix if keep_extension else "")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{_temporary_prefix(path)}{os.getpid()}.", suffix=suffix)
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows files have no such modes
            os.fchmod(fd, _final_mode(path))
    finally:
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


def _held_open(path: Path, kept: Path) -> TalkingPoseError:
    """The sentence for a file that could not be replaced; the new content is in `kept`. (A plain
    TalkingPoseError, so that it pickles across processes like every other.)"""
    if path.exists() and not os.access(path, os.W_OK):
        why, fix = "it is read-only", "make it writable"
    else:
        why = "another program holds it open (a video player, ComfyUI's preview or an antivirus scan, say)"
        fix = "close that program"
    return TalkingPoseError(
        f"Could not replace {path}: {why}. The old file is unchanged and the new content is kept as {kept}; {fix}, "
        f"then delete the old file and rename {kept.name} to {path.name} (or run again).")


def _kept_name(path: Path) -> Path:
    """A free name next to `path` for new content that could not take its place: `NAME.new.SUFFIX`, `NAME.new2...`"""
    number = 1
    while True:
        kept = path.with_name(f"{path.stem}.new{number if number > 1 else ''}{path.suffix}")
        if not os.path.lexists(kept):
            return kept
        number += 1


def _replace(temporary: Path, path: Path) -> None:
    """os.replace, retried for a few seconds while the target is held open (Windows refuses with
    PermissionError); then the temporary is renamed to a free name (it would otherwise be deleted as stale once
    this process ends) and the error says where it is."""
    deadline = time.monotonic() + REPLACE_RETRY_SECONDS
    for attempt in itertools.count():
        try:
            os.replace(temporary, path)
            return
        except PermissionError:
            pause = _REPLACE_PAUSES[min(attempt, len(_REPLACE_PAUSES) - 1)]
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
    kept = _kept_name(Path(path))
    os.replace(temporary, kept)
    raise _held_open(Path(path), kept)


def commit(temporary: Path, path: Path) -> Path:
    """Flushes `temporary` to the disk and renames it to `path` (replacing it atomically)."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    _replace(temporary, path)
    _fsync_directory(Path(path).parent)
    return Path(path)


def refuse_existing(path: Path) -> None:
    """FileExistsError when something (a file, a folder, a link, even a broken one) is at `path`."""
    if os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "File exists", str(path))


@contextlib.contextmanager
def replacing(path: Path, replace: bool = True, keep_extension: bool = False):
    """`with replacing(path) as tmp:` write the new content to `tmp`; on a clean exit it becomes `path`, on any
    error (a full disk, Ctrl-C) it is deleted and `path` is left as it was. With `replace=False` an existing
    `path` is left as it is and FileExistsError raised (checked before the writing and again before the rename)."""
    path = Path(path)
    if not replace:
        refuse_existing(path)
    remove_stale_temporaries(path)
    temporary = temporary_sibling(path, keep_extension)
    try:
        yield temporary
        if not replace:
            refuse_existing(path)
        commit(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_bytes(path: Path, data: bytes, replace: bool = True) -> Path:
    """Replaces `path` with `data` atomically and durably (see `replacing` for `replace`)."""
    with replacing(path, replace) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
    return Path(path)


def write_text(path: Path, text: str, replace: bool = True) -> Path:
    """`write_bytes` of `text` as UTF-8."""
    return write_bytes(path, text.encode("utf-8"), replace)

