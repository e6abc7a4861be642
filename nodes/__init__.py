"""ComfyUI node definitions: a thin layer over the engine package `talkingpose`."""
import functools
import logging
import os

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

# Every node is served on ComfyUI's V3 schema (host.v3_node: same ids, input names, types, options and widget order,
# so saved workflows load unchanged), the V1 class staying its one definition. Checked against ComfyUI v0.33.0, V3
# carries all that the V1 declarations do: hidden UNIQUE_ID/PROMPT (io.Hidden, for the meta-batch carry of the
# sampler, Pose Extract, Retarget and Smooth), the VHS_BatchManager socket (io.Custom), IS_CHANGED/VALIDATE_INPUTS
# of Load Pose Keypoints and Load State (fingerprint_inputs/validate_inputs, same parameters, so the same checks are
# skipped), output nodes (is_output_node; V3 adds hidden prompt/extra_pnginfo inputs, which the frontend neither
# shows nor saves), and the model objects (any Python object passes a V3 socket). No node is kept on V1.
# TALKINGPOSE_V1_NODES=1 serves them all as V1 nodes instead: a way back should a ComfyUI break a V3 node, and what
# the host tests compare the V3 declarations and renders with.
V3_NODES = tuple(NODE_CLASS_MAPPINGS)
if os.environ.get("TALKINGPOSE_V1_NODES") == "1":
    logging.getLogger("TalkingPose").info("TALKINGPOSE_V1_NODES=1: the TalkingPose nodes are served as V1 nodes.")
else:
    _v3 = {key: host.v3_node(NODE_CLASS_MAPPINGS[key], key, NODE_DISPLAY_NAME_MAPPINGS[key]) for key in V3_NODES}
    if None in _v3.values():
        if host.__name__.endswith(".host"):
            logging.getLogger("TalkingPose").warning(
                "This ComfyUI is too old for the V3 node schema (comfy_api.v0_0_2); the TalkingPose nodes load as V1 "
                "nodes and work the same. Update ComfyUI for progress previews and the newest node features.")
    else:
        NODE_CLASS_MAPPINGS.update(_v3)
