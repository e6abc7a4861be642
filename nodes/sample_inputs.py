"""The templates' sample inputs, put where ComfyUI's Load Image / Load Video look, so that a first run of every
template needs no file of the artist's own.

When ComfyUI loads the pack, each file of example_workflows/input/ (a photo and two short clips, made from the
official TalkingPose samples by tools/make_sample_inputs.py) is copied into ComfyUI's input folder unless a file of
that name is already there: an artist's own file of the same name is never replaced, and a deleted sample comes
back at the next start.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_workflows" / "input"

log = logging.getLogger("TalkingPose")


def _could_not_copy(sample: Path, input_dir: Path, exc: OSError) -> None:
    log.warning("Could not copy the template sample %s into %s (%s); the templates need a photo and a clip of "
                "your own there instead.", sample.name, input_dir, exc.strerror or exc)


def copy_sample_inputs(input_dir: Path) -> list[str]:
    """Copy the samples missing from `input_dir` into it; returns the names copied."""
    copied = []
    for sample in sorted(SAMPLE_DIR.iterdir()) if SAMPLE_DIR.is_dir() else []:
        if not sample.is_file():
            continue
        target = Path(input_dir) / sample.name
        try:
            out = open(target, "xb")  # "x": never over a file that is there
        except FileExistsError:
            continue
        except OSError as exc:
            _could_not_copy(sample, input_dir, exc)
            continue
        try:
            with out, open(sample, "rb") as src:
                shutil.copyfileobj(src, out)
        except OSError as exc:
            target.unlink(missing_ok=True)  # no half sample left to be taken for the artist's own file
            _could_not_copy(sample, input_dir, exc)
            continue
        copied.append(sample.name)
    if copied:
        log.info("Copied the templates' sample inputs %s into %s.", ", ".join(copied), input_dir)
    return copied
