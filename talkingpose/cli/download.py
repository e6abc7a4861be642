"""`download`: fetch the released weights from Hugging Face (only when run)."""
from __future__ import annotations

from pathlib import Path

from .options import check_writable_folder

WHAT = ("talkingpose", "vae", "image_encoder", "dwpose")


def register(subparsers) -> None:
    dl = subparsers.add_parser("download", help="download the released weights (resumable)")
    dl.add_argument("--models", type=Path, help="models root (default: $TALKINGPOSE_MODELS or ComfyUI's models/)")
    dl.add_argument("--what", nargs="+", choices=WHAT, default=list(WHAT))
    dl.set_defaults(func=run)


def run(args) -> int:
    from .. import downloads, runtime

    root = Path(args.models) if args.models else runtime.models_root()
    targets = {
        "talkingpose": (downloads.TALKINGPOSE_REPO, downloads.TALKINGPOSE_FILES, root / "talkingpose" / "TalkingPose"),
        "vae": (downloads.VAE_REPO, downloads.VAE_FILES, root / "vae" / "sd-vae-ft-mse"),
        "image_encoder": (downloads.IMAGE_ENCODER_REPO, downloads.IMAGE_ENCODER_FILES, root / "clip_vision" / "sd-image-variations-image-encoder"),
        "dwpose": (downloads.DWPOSE_REPO, downloads.DWPOSE_FILES, root / "dwpose"),
    }
    for name in args.what:  # every destination is checked before the first download starts
        check_writable_folder(targets[name][2], f"The {name} folder")
    for name in args.what:
        repo, files, dest = targets[name]
        print(f"{name}: {repo} → {dest}")
        for path in downloads.fetch(repo, files, dest):
            print(f"  {path.name}  sha256 {downloads.sha256(path)[:16]}…")
    return 0
