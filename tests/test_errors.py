"""How the pack's error type is named where users see it."""
import pickle

import talkingpose
from talkingpose.errors import TalkingPoseError


def comfyui_type_name(exc: BaseException) -> str:
    """What ComfyUI's execution.py (full_type_name, v0.8.0 to v0.33.0) shows before the message."""
    klass = type(exc)
    return klass.__qualname__ if klass.__module__ == "builtins" else f"{klass.__module__}.{klass.__qualname__}"


def test_comfyui_shows_the_package_name_not_a_path():
    assert comfyui_type_name(TalkingPoseError("x")) == "talkingpose.TalkingPoseError"
    assert talkingpose.TalkingPoseError is TalkingPoseError


def test_the_error_survives_pickling_with_its_sentence():
    """Worker processes send errors back pickled; the name ComfyUI shows must also be where pickle looks."""
    error = pickle.loads(pickle.dumps(TalkingPoseError("The model folder lacks pose_guider.pth.")))
    assert type(error) is TalkingPoseError and str(error) == "The model folder lacks pose_guider.pth."

