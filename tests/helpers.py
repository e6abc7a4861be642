"""Paths shared by the tests, and loading the pack's entry point the way ComfyUI does."""
import importlib.util
import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TALKINGPOSE_SHARED", PACK_ROOT.parent / "shared"))

# What ComfyUI does with a folder in custom_nodes/: a module named after the folder's path, executed from its
# __init__.py. Used only by the tests of the entry point itself; everything else imports `talkingpose` and `nodes`.
COMFYUI_STYLE_LOAD = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location({name!r}, {init!r})\n"
    "pack = importlib.util.module_from_spec(spec); sys.modules[{name!r}] = pack; spec.loader.exec_module(pack)\n"
)


def load_pack_like_comfyui(name: str = "ComfyUI-TalkingPose"):
    """The pack's entry module, loaded as ComfyUI loads a custom node folder."""
    if name not in sys.modules:  # the steps of COMFYUI_STYLE_LOAD, in this process
        spec = importlib.util.spec_from_file_location(name, PACK_ROOT / "__init__.py")
        pack = importlib.util.module_from_spec(spec)
        sys.modules[name] = pack
        spec.loader.exec_module(pack)
    return sys.modules[name]
