"""ComfyUI node definitions: a thin layer over the engine package `talkingpose`."""
import functools
import logging

from talkingpose.dependencies import explain_missing_modules

from . import lora_nodes, metrics_nodes, model_nodes, pose_nodes, retarget_nodes, state_nodes
from .backend import host

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (model_nodes, pose_nodes, retarget_nodes, state_nodes, metrics_nodes, lora_nodes):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)


def _explaining_missing_modules(function):
    """The node's function, with a missing required package reported as the sentence that installs it."""
    @functools.wraps(function)
    def run(*args, **kwargs):
        with explain_missing_modules():
            return function(*args, **kwargs)
    return run


for _node_class in NODE_CLASS_MAPPINGS.values():
    _function = getattr(_node_class, "FUNCTION", None)
    if _function and not getattr(getattr(_node_class, _function), "__wrapped__", None):
        setattr(_node_class, _function, _explaining_missing_modules(getattr(_node_class, _function)))

# Nodes ComfyUI gets on its V3 schema (host.v3_node: same ids, inputs and widget order). The others stay V1 for
# now: the sampler, Pose Extract, Retarget and Smooth read hidden inputs (unique_id/prompt) for the meta-batch chunk
# carry; Load Pose Keypoints and Load State answer IS_CHANGED/VALIDATE_INPUTS, whose V3 counterparts differ; the
# model, Appearance Encode and LoRA nodes were not moved in this step (the model nodes are being reworked for
# ComfyUI's memory manager at the same time); Save Pose Keypoints and Video Metrics are output nodes, which V3 serves
# with hidden prompt/extra_pnginfo inputs added, so their declaration would no longer be the V1 one.
V3_NODES = ("TalkingPoseDrawKeypoints",)
_v3 = {key: host.v3_node(NODE_CLASS_MAPPINGS[key], key, NODE_DISPLAY_NAME_MAPPINGS[key]) for key in V3_NODES}
if None in _v3.values():
    if host.__name__.endswith(".host"):
        logging.getLogger("TalkingPose").warning(
            "This ComfyUI is too old for the V3 node schema (comfy_api.v0_0_2); the TalkingPose nodes load as V1 "
            "nodes and work the same. Update ComfyUI for progress previews and the newest node features.")
else:
    NODE_CLASS_MAPPINGS.update(_v3)
