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

    root = runtime.models_root(args.models)
    # Where ComfyUI's loaders and the shipped workflows look: the three TalkingPose files in a folder, the image
    # encoder and the VAE as the single files the workflows name, DWPose beside them.
    targets = {
        "talkingpose": (downloads.TALKINGPOSE_REPO, root / "talkingpose" / "TalkingPose",
                        lambda dest: downloads.fetch(downloads.TALKINGPOSE_REPO, downloads.TALKINGPOSE_FILES, dest)),
        "vae": (downloads.VAE_REPO, root / "vae",
                lambda dest: downloads.fetch(downloads.VAE_REPO, downloads.VAE_FILES, dest)),
        "image_encoder": (downloads.IMAGE_ENCODER_REPO, root / "clip_vision",
                          lambda dest: [downloads.fetch_image_encoder(dest)]),
        "dwpose": (downloads.DWPOSE_REPO, root / "dwpose",
                   lambda dest: downloads.fetch(downloads.DWPOSE_REPO, downloads.DWPOSE_FILES, dest)),
    }
    for name in args.what:  # every destination is checked before the first download starts
        check_writable_folder(targets[name][1], f"The {name} folder")
    for name in args.what:
        repo, dest, fetch = targets[name]
        print(f"{name}: {repo} -> {dest}")
        for path in fetch(dest):
            print(f"  {path.name}  sha256 {downloads.sha256(path)[:16]}…")
    return 0
