"""File names Windows can hold, and paths short enough for it, checked before any work.

Windows (NTFS and its file API) cannot hold some names that Linux and macOS take: the device names CON, PRN,
AUX, NUL, COM1-COM9 and LPT1-LPT9 with any extension (`nul.mp4` is the null device: what is written there is
gone), names ending in a dot or a space (dropped silently, so the file gets another name), and the characters
< > : " | ? * and control characters. Names that only the user's own machine reads (the command line's paths) are
checked on Windows; names that travel with a workflow or a batch job list are checked everywhere, so that what
works on one machine works on every other.

A path longer than 259 characters (MAX_PATH, 260 with the closing NUL) fails on Windows unless long paths are
enabled in the registry and in every program that opens it (FFmpeg included); the pack does not rely on that and
refuses such a path before any work, saying how long it is and what to shorten.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path, PureWindowsPath

from .errors import TalkingPoseError

RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"{port}{n}" for port in ("COM", "LPT") for n in (*"123456789", "\u00b9",
                                                                                          "\u00b2", "\u00b3"))}
_FORBIDDEN = re.compile(r'[<>:"|?*\x00-\x1f]')
MAX_PATH_CHARS = 259
# durable.temporary_sibling writes `.NAME.PID.RANDOM.tmp` next to each file: a pid of up to 10 digits and
# mkstemp's 8 random characters.
TEMPORARY_EXTRA = len("." + "." + "0" * 10 + "." + "x" * 8 + ".tmp")
# The deepest file a render writes beyond its output path: a state file's temporary inside `<out>.partial/`
# (video_io.partial_dir; render_output's state-NNNNNNN.safetensors).
RENDER_EXTRA = len(".partial/") + len("state-0000000.safetensors") + TEMPORARY_EXTRA


def on_windows() -> bool:
    return sys.platform == "win32"


def part_problem(part: str) -> str | None:
    """Why Windows cannot hold `part` (one folder or file name) as it is, or None."""
    if part.split(".", 1)[0].rstrip(" ").upper() in RESERVED:
        return (f"{part!r} is a name Windows keeps for a device (CON, PRN, AUX, NUL, COM1-COM9, LPT1-LPT9, with any "
                "extension), so nothing would be saved; choose another name")
    if part.endswith((".", " ")) and part not in (".", ".."):
        return f"{part!r} ends in a dot or a space, which Windows drops from file names; remove it"
    found = sorted(set(_FORBIDDEN.findall(part)))
    if found:
        shown = " ".join(repr(c) if c.isprintable() else f"\\x{ord(c):02x}" for c in found)
        return (f"{part!r} holds {shown}, which Windows does not allow in file names; use letters, digits, spaces, "
                "'-', '_' and '.'")
    return None


def check_relative_name(name: str, what: str) -> None:
    """Refuses a name given relative to a folder (parts split by / or \\) that Windows cannot hold."""
    for part in re.split(r"[\\/]", name):
        problem = part_problem(part) if part else None
        if problem:
            raise TalkingPoseError(f"The {what} '{name}' cannot be used: {problem}.")


def check_path(path, what: str) -> None:
    """On Windows, refuses a path the user typed whose folder or file names Windows cannot hold (the drive and
    the root are left alone)."""
    if not on_windows():
        return
    windows = PureWindowsPath(str(path))
    for part in windows.parts[1:] if windows.anchor else windows.parts:
        problem = part_problem(part)
        if problem:
            raise TalkingPoseError(f"The {what} {path} cannot be used: {problem}.")


def check_length(path, extra: int, what: str, shorten: str) -> None:
    """On Windows, refuses before any work an output `path` whose deepest file, `extra` characters longer than
    the path itself, would be longer than MAX_PATH."""
    path = Path(path).absolute()
    length = len(str(path)) + extra
    if on_windows() and length > MAX_PATH_CHARS:
        raise TalkingPoseError(
            f"The {what} {path} would need paths of {length} characters (the files written for it); Windows allows "
            f"{MAX_PATH_CHARS}. Shorten {shorten} by at least {length - MAX_PATH_CHARS} characters.")
