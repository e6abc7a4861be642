"""ComfyUI node definitions: a thin layer over the engine package `talkingpose`."""
from . import lora_nodes, metrics_nodes, model_nodes, pose_nodes, retarget_nodes, state_nodes

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (model_nodes, pose_nodes, retarget_nodes, state_nodes, metrics_nodes, lora_nodes):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
