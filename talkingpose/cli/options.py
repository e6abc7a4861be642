"""Argument types and output checks shared by several commands."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .. import file_names
from ..errors import TalkingPoseError

# Options that change the frames beyond fp16 rounding are opt-in and say so in their help; the README gives their
# measured deviation from the exact render.
STEPS_HELP = ("denoising steps per frame (default 30, as the paper); fewer is faster but CHANGES THE FRAMES "
              "(an opt-in: see the README for the deviation measured)")
WEIGHTS_FP8_HELP = ("store the UNets' weights in fp8 (e4m3), cast to the compute precision layer by layer: about half "
                    "their fp16 memory, for cards of 6 GB or less; CHANGES THE FRAMES (an opt-in: see the README for "
                    "the deviation measured) and runs without the CUDA graph")


def size(text: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT` -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' is not WIDTHxHEIGHT, e.g. 512x512") from None
    return width, height


def add_alignment(parser, choices: list[str], default: str, help: str, legacy_flag: str) -> None:
    """`--alignment`, how the driving poses are fitted to the source person (the nodes' `alignment`), plus the
    option's name before it had one name everywhere (`legacy_flag`), still accepted and hidden from the help. The
    values before then (align, full) are accepted by both and read as today's (similarity, retarget)."""
    def alignment(text: str) -> str:
        if text in choices:  # argparse converts the default too: no pose engine (numpy) before the torch check
            return text
        from ..pose.track import upgrade_mode

        return upgrade_mode(text)

    parser.add_argument("--alignment", type=alignment, choices=choices, default=default, help=help)
    parser.add_argument(legacy_flag, dest="alignment", type=alignment, choices=choices, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


def output_file(text: str, beside: str = "") -> Path:
    """An output file argument: on Windows, refused at once when Windows cannot hold one of its names or a save of
    it (or of the file `NAME + beside` the command writes next to it) would pass MAX_PATH (see
    talkingpose.file_names)."""
    path = Path(text)
    try:
        file_names.check_path(path, "path")
        file_names.check_length(path, len(beside) + file_names.TEMPORARY_EXTRA, "path",
                                "the path (its folder or its name)")
    except TalkingPoseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def output_folder(text: str) -> Path:
    """An output folder argument: on Windows, refused at once when Windows cannot hold one of its names."""
    path = Path(text)
    try:
        file_names.check_path(path, "folder")
    except TalkingPoseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(folder: Path, what: str) -> None:
    """Refuse, before any work is done, a folder that cannot be made or written: a file in the way, or no
    permission (tried by creating a temporary file, which also catches read-only file systems and /proc)."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise TalkingPoseError(f"{what} {folder} cannot be made: {existing} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise TalkingPoseError(f"{what} {folder} cannot be written ({exc.strerror or exc}); choose a folder you can "
                               "write to.") from None


def check_writable_file(path: Path, what: str) -> None:
    """Refuse, before any work is done, an output file name that is a folder or lies where nothing can be written."""
    path = Path(path)
    if path.is_dir():
        raise TalkingPoseError(f"{what} {path} is a folder; give a file name.")
    check_writable_folder(path.parent, f"The folder of {what}")
