"""The networks hold no reference cycle: dropping the last reference frees them at once.

ComfyUI tracks models with weak references; a model kept alive by a cycle after its patcher is gone makes it log
"Potential memory leak detected with model TalkingPoseNetworks" and run a full garbage collection.
"""
import gc
import weakref


def test_networks_are_freed_without_the_garbage_collector(tiny_weights):
    from talkingpose.checkpoints import load_networks

    load_networks(tiny_weights["model"])  # first load: lazy imports done outside the measured part
    gc.collect()
    gc.disable()
    try:
        networks = load_networks(tiny_weights["model"])
        ref = weakref.ref(networks)
        del networks
        assert ref() is None, "TalkingPoseNetworks survived its last reference (a reference cycle)"
    finally:
        gc.enable()
