"""ComfyUI entry point of the TalkingPose node pack.

ComfyUI loads this folder by its path and installs nothing, so the engine package `talkingpose` that lives
beside this file is importable only when the pack was `pip install -e`-ed; otherwise the folder is appended to
`sys.path` (at the end, so nothing of ComfyUI's own is shadowed). Importing stays quick: node modules import
torch-heavy engine code only when a node runs.
"""
import logging
import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)

import talkingpose  # noqa: E402  (needs the path above)
from talkingpose.console import make_log_lines_encodable  # noqa: E402

# ComfyUI's console streams refuse what their code page cannot hold (cp1252 on most Windows machines, where
# ComfyUI Desktop writes its log through a pipe): the pack's log lines are escaped to fit before they reach them.
make_log_lines_encodable(logging.getLogger("TalkingPose"))

if os.path.dirname(os.path.dirname(os.path.abspath(talkingpose.__file__))) != _PACK_DIR:
    logging.getLogger("TalkingPose").warning(
        "Another copy of the TalkingPose engine is installed (%s) and is used instead of the one in %s; "
        "uninstall it ('pip uninstall talkingpose') to use this pack's own.", talkingpose.__file__, _PACK_DIR)

from talkingpose.dependencies import install_sentence, missing_requirements  # noqa: E402

_missing = missing_requirements()
if _missing:  # said once here; a node that needs one says it again as its error
    logging.getLogger("TalkingPose").warning(install_sentence(_missing))

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
from .nodes.backend import INSIDE_COMFYUI, host  # noqa: E402
from .nodes.sample_inputs import copy_sample_inputs  # noqa: E402

WEB_DIRECTORY = "./web"

host.register_model_folders()

from .nodes.weights_status import ROUTE, weights_status  # noqa: E402

host.serve_json(ROUTE, weights_status)
if INSIDE_COMFYUI:  # (a test loading the pack without ComfyUI has no input folder of ComfyUI's to fill)
    copy_sample_inputs(host.input_directory())

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
