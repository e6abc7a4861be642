"""ComfyUI entry point of the TalkingPose node pack.

Importing this stays quick: node modules import torch-heavy engine code only when a node runs.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.host import register_model_folders

WEB_DIRECTORY = "./web"

register_model_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
