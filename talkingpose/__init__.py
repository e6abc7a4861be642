"""The TalkingPose engine: networks, checkpoint loading, appearance encoding, the closed-loop sampler,
DWPose extraction and video metrics. It imports nothing from ComfyUI, so the headless command and the
tests use it on its own; `nodes/` is a thin layer over it.

Submodules are imported where they are used: importing this package stays free of torch and diffusers,
so ComfyUI starts quickly.
"""

from .errors import TalkingPoseError  # noqa: F401  (its public name: see errors.py)
