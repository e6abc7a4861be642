"""File names that the nodes take from a workflow, kept inside ComfyUI's folders.

A workflow someone shares is untrusted input, so its file names are too: save nodes write only inside ComfyUI's
output folder and load nodes read only from its input and output folders, as ComfyUI's own Save Image and Load
Image do. A name is refused with a sentence (never echoing a file's content) when it is absolute, climbs out with
`..`, holds NUL, a line break or another control character, is too long for a file system, or is one Windows
cannot hold (CON, NUL, COM1..., a name ending in a dot or a space, < > : " | ? *; refused on every system, since
workflows travel between them; ComfyUI's %date:...% variables are checked once expanded); after joining, the
fully resolved path (links followed) must still lie inside the folder, and on Windows within MAX_PATH. The command
line has no such limit: it takes whatever path its user types.

Loaders' values follow ComfyUI's annotation: `name [input]` is in the input folder, `name [output]` or a plain
name in the output folder (where the matching save node writes, and what older workflows meant).
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from talkingpose import file_names

from .backend import host

# Bytes per folder or file name: room for the numbering and suffixes ("_00001.json.tmp") below the usual
# 255-byte file-system limit.
MAX_PART_BYTES = 200
MAX_NAME_CHARS = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VARIABLE = re.compile(r"%[^%]*%")  # ComfyUI's save-prefix variables (%date:yyyy-MM-dd%, %width%, ...)


def _error(message: str):
    from talkingpose.errors import TalkingPoseError

    return TalkingPoseError(message)


def check_name(name, what: str, writes: bool) -> str:
    """The name, stripped of surrounding spaces, if it may be used inside a ComfyUI folder; else a sentence."""
    if not isinstance(name, str):
        raise _error(f"The {what} must be text, got {type(name).__name__}.")
    name = name.strip()
    where = "ComfyUI's output folder" if writes else "ComfyUI's input and output folders"
    if not name:
        raise _error(f"The {what} is empty; give a file name, e.g. talkingpose/name.")
    if "\x00" in name:
        raise _error(f"The {what} contains a NUL character, which no file name can hold; type the name again.")
    if "\n" in name or "\r" in name:
        raise _error(f"The {what} contains a line break; give the name on one line.")
    if _CONTROL.search(name):
        raise _error(f"The {what} contains a control character; use letters, digits, spaces, '-', '_', '.' and '/'.")
    if len(name) > MAX_NAME_CHARS:
        raise _error(f"The {what} is {len(name)} characters long; keep it under {MAX_NAME_CHARS}.")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or name.startswith(("\\", "~")):
        raise _error(f"The {what} is an absolute path. Nodes only use files inside {where}: give a name relative "
                     "to it, e.g. talkingpose/name (a workflow from someone else cannot then write or read elsewhere).")
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        raise _error(f"The {what} climbs out of its folder with '..'. Nodes only use files inside {where}: give a "
                     "name relative to it without '..'.")
    longest = max(parts, key=lambda part: len(part.encode("utf-8")))
    if len(longest.encode("utf-8")) > MAX_PART_BYTES:
        raise _error(f"The {what} has a folder or file name of {len(longest)} characters; file systems allow about "
                     f"255 bytes, so keep each part under {MAX_PART_BYTES}.")
    if writes:
        file_names.check_relative_name(_VARIABLE.sub("", name), what)
    return name


def _check_fits_windows(path: Path, what: str) -> Path:
    file_names.check_length(path, file_names.TEMPORARY_EXTRA, what, "the name (or the path of ComfyUI's output folder)")
    return path


def _inside(path: Path, folders: list[Path], name: str, what: str) -> Path:
    """`path` if, with every link resolved, it lies inside one of `folders`; else a sentence."""
    resolved = Path(os.path.realpath(path))
    for folder in folders:
        if resolved.is_relative_to(os.path.realpath(folder)):
            return path
    names = " or ".join(str(f) for f in folders)
    raise _error(f"The {what} '{name}' leads outside {names} through a link; nodes only use files inside.")


def with_suffix(name: str, suffix: str) -> str:
    return name if name.endswith(suffix) else name + suffix


def output_file(name: str, suffix: str, what: str) -> Path:
    """A save node's fixed file in the output folder: `<output>/<name><suffix>`."""
    name = with_suffix(check_name(name, what, writes=True), suffix)
    out = host.output_directory()
    return _check_fits_windows(_inside(out / name, [out], name, what), what)


def numbered_output_file(prefix: str, suffix: str, what: str) -> Path:
    """A new numbered file `<stem>_00001<suffix>`, `…_00002…` in the output folder, as ComfyUI's save nodes number
    theirs: the next number after those in the folder, found by listing it (no glob patterns, so '[' in a name is
    just a character), and created exclusively so that an existing file is never replaced."""
    prefix = check_name(prefix, what, writes=True)
    out = host.output_directory()
    _inside(out / prefix, [out], prefix, what)
    folder, stem = host.save_prefix(prefix)
    expanded = Path(os.path.relpath(folder / stem, out)).as_posix()
    file_names.check_relative_name(_VARIABLE.sub("", expanded), what)  # what ComfyUI's variables became
    _check_fits_windows(folder / f"{stem}_00000{suffix}", what)
    folder.mkdir(parents=True, exist_ok=True)
    _inside(folder, [out], prefix, what)
    start = f"{stem}_"
    numbers = [int(entry[len(start):-len(suffix)]) for entry in os.listdir(folder)
               if entry.startswith(start) and entry.endswith(suffix) and entry[len(start):-len(suffix)].isdigit()]
    counter = max(numbers, default=0) + 1
    while True:
        path = folder / f"{stem}_{counter:05d}{suffix}"
        try:
            with open(path, "x"):
                return path
        except FileExistsError:  # made meanwhile by another save
            counter += 1


def input_file(name: str, suffix: str, what: str) -> Path:
    """A loader's file: a plain name in the output folder, `name [input]` / `name [output]` in that folder."""
    name = check_name(name, what, writes=False)
    path = host.annotated_file(name, host.output_directory())
    path = path.with_name(with_suffix(path.name, suffix))
    return _inside(path, [host.input_directory(), host.output_directory()], name, what)


def validate_input_name(name, suffix: str, what: str):
    """A loader's VALIDATE_INPUTS answer: True, or the sentence ComfyUI shows when the prompt is queued. A loader
    that names its input in VALIDATE_INPUTS makes ComfyUI skip its own is-it-in-the-list check, so workflows saved
    when the input was a free text field still load; the name is checked here instead."""
    from talkingpose.errors import TalkingPoseError

    if name is None:  # linked from another node: checked when the node runs
        return True
    try:
        input_file(name, suffix, what)
    except TalkingPoseError as exc:
        return str(exc)
    return True


def input_file_version(name, suffix: str, what: str):
    """A loader's IS_CHANGED answer: the file's path, modification time and size (NaN, never equal to itself, when
    the name is refused or the file cannot be read, so the node always runs and reports it)."""
    from talkingpose.errors import TalkingPoseError

    try:
        path = input_file(name, suffix, what)
        stat = path.stat()
    except (TalkingPoseError, OSError):
        return float("nan")
    return f"{path}:{stat.st_mtime_ns}:{stat.st_size}"


def list_files(suffix: str, accept=None) -> list[str]:
    """Loader choices: files ending in `suffix` in the output folder (plain names) and in the input folder
    (`name [input]`), sorted, links to elsewhere left out; `accept(path)` may filter further."""
    choices = []
    for folder, tag in ((host.output_directory(), ""), (host.input_directory(), " [input]")):
        if not folder.is_dir():
            continue
        root = os.path.realpath(folder)
        for current, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for entry in sorted(files):
                path = Path(current) / entry
                if not entry.endswith(suffix) or not Path(os.path.realpath(path)).is_relative_to(root):
                    continue
                if accept is None or accept(path):
                    choices.append(path.relative_to(folder).as_posix() + tag)
    return choices
