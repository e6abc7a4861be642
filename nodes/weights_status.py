"""Which weights the shipped workflows need are missing, said before Run.

The frontend's missing-models panel lists only combo values that look like model files, so it never sees the
TalkingPose loader's folder value, and it cannot fetch the image encoder that `download` converts into one file.
The web extension (web/weights.js) asks `GET /talkingpose/weights` when a workflow opens and names what is
missing on the loader nodes, with the command that fetches it; these are the sentences it shows.
"""
from __future__ import annotations

from .backend import host
from .model_nodes import _installed_models, _missing_model_message

ROUTE = "/talkingpose/weights"


def _download_command(what: str) -> str:
    from talkingpose.runtime import PACK_ROOT

    folders = host.model_folders("clip_vision" if what == "image_encoder" else "talkingpose")
    models = folders[0].parent if folders else "models"
    return f"python {PACK_ROOT / 'cli.py'} download --what {what} --models {models}"


def weights_status() -> dict:
    """{"talkingpose": {installed, message}, "image_encoder": {file, installed, message}} for the browser."""
    from talkingpose.downloads import IMAGE_ENCODER_FILE, IMAGE_ENCODER_REPO

    try:
        models = sorted(_installed_models())
    except Exception:  # a broken folder must not break the page; the loader reports it when run
        models = []
    encoder_folders = host.model_folders("clip_vision")
    encoder_installed = any((folder / IMAGE_ENCODER_FILE).is_file() for folder in encoder_folders)
    return {
        "talkingpose": {"installed": models, "message": _missing_model_message()},
        "image_encoder": {
            "file": IMAGE_ENCODER_FILE,
            "installed": encoder_installed,
            "message": (f"{IMAGE_ENCODER_FILE} is not in {', '.join(str(f) for f in encoder_folders) or 'models/clip_vision'}. "
                        f"It is the image encoder of {IMAGE_ENCODER_REPO} (published there as image_encoder/"
                        f"pytorch_model.bin) converted to one file; to fetch and convert it, run with ComfyUI's "
                        f"Python: "
                        f"{_download_command('image_encoder')}"),
        },
    }
