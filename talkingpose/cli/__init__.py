"""TalkingPose from the command line: `talkingpose <command> --help` (or `python -m talkingpose`, `python cli.py`).

Each command is a module of this package with a `register(subparsers)` function; `COMMANDS` lists them in the
order `--help` shows them.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from ..console import make_streams_safe

COMMANDS = ("animate", "download", "convert", "metrics", "pose", "batch", "evaluate", "finetune")

DESCRIPTION = """\
TalkingPose: animate one photo of a person with a driving video.

    animate   source image + driving video -> animated mp4 (streams; --resume after Ctrl-C or a crash)
    download  fetch the released weights from Hugging Face (asks nothing, downloads only when run)
    convert   write the three TalkingPose files as one fp16 .safetensors
    metrics   TJE, PSNR and SSIM between real and generated videos (or folders of them)
    pose      keypoint tracks: extract, retarget to the source person, smooth, draw
    batch     many jobs (a CSV or JSON Lines list) on Ray: this machine or a cluster; resumable
    evaluate  the paper's self-identity protocol on a folder of videos: renders, then TJE/PSNR/SSIM
    finetune  a person's clip -> LoRA adapter for animate --lora (resumable)
"""


def build_parser(prog: str = "talkingpose") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("diffusers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # huggingface_hub prints its messages (a download's "Retrying in 1s") with a handler of its own; passed on to
    # ours as well, each would show twice.
    logging.getLogger("huggingface_hub").propagate = False


def missing_requirement(exc: ModuleNotFoundError) -> str:
    """The sentence for a third-party module missing from this Python. torch is named when it is missing too:
    it is what the setup installs first, so it is the real cause, whichever import happened to fail first."""
    import importlib.util

    missing = "torch" if exc.name != "torch" and importlib.util.find_spec("torch") is None else exc.name
    return (f"No module named '{missing}': the pack's requirements are not installed in this Python ({sys.executable}). "
            "Activate the virtual environment made at setup (`. .venv/bin/activate`), or install them as the README's "
            "one-time setup says.")


def main(argv=None, prog: str = "talkingpose") -> int:
    make_streams_safe()  # first: --help and argparse's own errors print too
    args = build_parser(prog).parse_args(argv)
    if hasattr(signal, "SIGBREAK"):
        # Windows: Ctrl-Break ends a process at once by default; as Ctrl-C, it stops the command cleanly instead
        # (finished frames kept and the --resume sentence printed).
        signal.signal(signal.SIGBREAK, signal.default_int_handler)
    configure_logging()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the loaders' own bars hide ours
    from ..errors import TalkingPoseError

    try:
        return args.func(args)
    except TalkingPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "talkingpose").split(".")[0] == "talkingpose":
            raise  # the pack itself is broken: keep the traceback
        print(f"error: {missing_requirement(exc)}", file=sys.stderr)
        return 2
