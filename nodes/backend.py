"""The one place that chooses what the nodes run on.

Inside ComfyUI (its `comfy` and `folder_paths` modules importable) that is the adapter `nodes/host.py`;
anywhere else — the tests, CI, a benchmark driving the node classes — the standalone host
`nodes/standalone.py`, which has the same interface. Node modules use `host` from here and nothing else.
"""
from __future__ import annotations


def _comfyui_is_running() -> bool:
    try:
        import comfy.model_management  # noqa: F401
        import folder_paths  # noqa: F401
    except ImportError:
        return False
    return True


INSIDE_COMFYUI = _comfyui_is_running()
if INSIDE_COMFYUI:
    from . import host
else:
    from . import standalone as host

__all__ = ["host", "INSIDE_COMFYUI"]
