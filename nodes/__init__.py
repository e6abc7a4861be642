"""ComfyUI node definitions: a thin layer over the engine package `talkingpose`."""
import functools

from talkingpose.dependencies import explain_missing_modules

from . import lora_nodes, metrics_nodes, model_nodes, pose_nodes, retarget_nodes, state_nodes

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
