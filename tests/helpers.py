"""Paths shared by the tests."""
import os
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TALKINGPOSE_SHARED", PACK_ROOT.parent / "shared"))
