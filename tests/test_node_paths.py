"""File names in a workflow stay inside ComfyUI's folders (issue 13 §7, issue 14), through the standalone node path.

Outside ComfyUI the output folder is `$TALKINGPOSE_MODELS/../output` and the input folder `…/input`; these tests
put both in a temporary folder with a `models/` folder (holding a "checkpoint") and an `elsewhere/` folder beside
them, and check that no name a workflow can carry reads or writes there.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from talkingpose import file_names
from talkingpose.errors import TalkingPoseError
from talkingpose.sampler import SamplerSettings, SamplerState
from nodes import paths
from nodes.pose_nodes import TalkingPoseLoadKeypoints, TalkingPoseSaveKeypoints
from nodes.state_nodes import LoadTalkingPoseState, SaveTalkingPoseState
from talkingpose.state_file import is_state_file

SECRET = "SECRET-7f3a"  # in files outside the folders: must never show up in a message
KEYPOINTS = [{"people": [], "canvas_width": 64, "canvas_height": 48}]


@pytest.fixture
def comfy_dirs(tmp_path, monkeypatch):
    """A ComfyUI-like layout: models/ (with a checkpoint), output/, input/, and a folder elsewhere/ beside them."""
    for sub in ("models/checkpoints", "output", "input", "elsewhere"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "sd15.safetensors").write_bytes(b"the user's checkpoint")
    (tmp_path / "elsewhere" / "secret.json").write_text(json.dumps({"canvas_width": SECRET}))
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(tmp_path / "models"))
    return tmp_path


def _state(seed: int = 0, next_frame: int = 2) -> SamplerState:
    return SamplerState(noise=torch.zeros(4, 8, 8), last_latent=torch.ones(4, 8, 8), next_frame=next_frame,
                        settings=SamplerSettings(seed=seed), width=64, height=64)


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# ------------------------------------------------------------------------------------------------ names refused
@pytest.mark.parametrize("name, sentence", [
    ("/abs/path/name", "is an absolute path"),
    ("../../name", "climbs out of its folder with '..'"),
    ("talkingpose/../../name", "climbs out of its folder with '..'"),
    ("..\\..\\name", "climbs out of its folder with '..'"),
    ("C:\\Users\\name", "is an absolute path"),
    ("\\\\server\\share\\name", "is an absolute path"),
    ("~/name", "is an absolute path"),
    ("talkingpose/na\x00me", "contains a NUL character"),
    ("talkingpose/na\nme", "contains a line break"),
    ("talkingpose/na\rme", "contains a line break"),
    ("talkingpose/na\x1bme", "contains a control character"),
    ("n" * 300, "has a folder or file name of 300 characters"),
    ("   ", "is empty"),
])
def test_save_state_refuses_the_name_and_writes_nothing(comfy_dirs, name, sentence):
    before = _files(comfy_dirs)
    with pytest.raises(TalkingPoseError, match=sentence):
        SaveTalkingPoseState().save(_state(), name, False)
    assert _files(comfy_dirs) == before


def test_save_state_with_overwrite_cannot_replace_a_model_checkpoint(comfy_dirs):
    checkpoint = comfy_dirs / "models" / "checkpoints" / "sd15.safetensors"
    with pytest.raises(TalkingPoseError, match="climbs out"):
        SaveTalkingPoseState().save(_state(), "../models/checkpoints/sd15", True)
    assert checkpoint.read_bytes() == b"the user's checkpoint"


def test_save_state_at_an_absolute_path_makes_no_folders(comfy_dirs):
    target = comfy_dirs / "elsewhere" / "a" / "b" / "c" / "state"
    with pytest.raises(TalkingPoseError, match="absolute path"):
        SaveTalkingPoseState().save(_state(), str(target), True)
    assert not (comfy_dirs / "elsewhere" / "a").exists()


def test_save_state_makes_missing_folders_inside_the_output_folder(comfy_dirs):
    _, path = SaveTalkingPoseState().save(_state(), "a/b/c/state", False)["result"]
    assert Path(path) == comfy_dirs / "output" / "a" / "b" / "c" / "state.safetensors"
    assert LoadTalkingPoseState().load("a/b/c/state")[1] == 2


def test_save_state_never_replaces_a_file_that_is_not_a_state(comfy_dirs):
    other = comfy_dirs / "output" / "checkpoints" / "mine.safetensors"  # e.g. from ComfyUI's Save Checkpoint
    other.parent.mkdir()
    other.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a":{}}        ')
    with pytest.raises(TalkingPoseError, match="is not a TalkingPose state, so it is never replaced"):
        SaveTalkingPoseState().save(_state(), "checkpoints/mine", True)
    assert other.read_bytes().startswith(b"\x10\x00")


def test_save_state_with_overwrite_replaces_an_earlier_state_even_if_cut_short(comfy_dirs):
    path = Path(SaveTalkingPoseState().save(_state(seed=1), "run/state", False)["result"][1])
    path.write_bytes(path.read_bytes()[:-40])  # tensor data cut short by a crash; the header is intact
    assert is_state_file(path)
    SaveTalkingPoseState().save(_state(seed=2), "run/state", True)
    assert LoadTalkingPoseState().load("run/state")[0].settings.seed == 2


def test_a_link_inside_the_output_folder_to_elsewhere_is_not_followed(comfy_dirs):
    (comfy_dirs / "output" / "link").symlink_to(comfy_dirs / "elsewhere", target_is_directory=True)
    with pytest.raises(TalkingPoseError, match="leads outside .* through a link"):
        SaveTalkingPoseState().save(_state(), "link/state", False)
    assert not (comfy_dirs / "elsewhere" / "state.safetensors").exists()
    with pytest.raises(TalkingPoseError, match="through a link"):
        TalkingPoseLoadKeypoints().load("link/secret.json")
    with pytest.raises(TalkingPoseError, match="through a link"):
        TalkingPoseSaveKeypoints().save(KEYPOINTS, "link/track")
    assert _files(comfy_dirs / "elsewhere") == {"secret.json"}
    assert "link/secret.json" not in TalkingPoseLoadKeypoints.INPUT_TYPES()["required"]["path"][0]


# ------------------------------------------------------------------------------------------------ loading states
@pytest.mark.parametrize("name, sentence", [
    ("{elsewhere}/state", "is an absolute path"),
    ("../elsewhere/state", "climbs out"),
    ("../models/checkpoints/sd15", "climbs out"),
    ("state\x00", "contains a NUL character"),
])
def test_load_state_refuses_names_outside_the_folders(comfy_dirs, name, sentence):
    SamplerState.save(_state(), comfy_dirs / "elsewhere" / "state.safetensors")
    name = name.format(elsewhere=comfy_dirs / "elsewhere")
    with pytest.raises(TalkingPoseError, match=sentence):
        LoadTalkingPoseState().load(name)
    message = LoadTalkingPoseState.VALIDATE_INPUTS(name)  # what ComfyUI shows when the prompt is queued
    assert isinstance(message, str) and sentence in message
    assert math.isnan(LoadTalkingPoseState.IS_CHANGED(name))


def test_load_state_offers_the_saved_states_and_keeps_old_names_working(comfy_dirs):
    SaveTalkingPoseState().save(_state(seed=3), "talkingpose/state", False)
    SamplerState.save(_state(seed=4), comfy_dirs / "input" / "given.safetensors")
    (comfy_dirs / "output" / "other.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (comfy_dirs / "output" / "link").symlink_to(comfy_dirs / "elsewhere", target_is_directory=True)
    SamplerState.save(_state(), comfy_dirs / "elsewhere" / "outside.safetensors")

    choices = LoadTalkingPoseState.INPUT_TYPES()["required"]["filename"][0]
    assert choices == ["talkingpose/state.safetensors", "given.safetensors [input]"]
    for name in choices:
        assert LoadTalkingPoseState.VALIDATE_INPUTS(name) is True
    assert LoadTalkingPoseState().load("given.safetensors [input]")[0].settings.seed == 4
    assert LoadTalkingPoseState().load("talkingpose/state.safetensors [output]")[0].settings.seed == 3
    # A workflow saved when the widget was free text: the value is not in the list, but ComfyUI lets
    # VALIDATE_INPUTS judge it (the input is named in its signature) and the file loads as before.
    assert LoadTalkingPoseState.VALIDATE_INPUTS("talkingpose/state") is True
    assert LoadTalkingPoseState().load("talkingpose/state")[0].settings.seed == 3
    assert LoadTalkingPoseState.VALIDATE_INPUTS(None) is True  # linked from another node: checked at run time


def test_load_state_of_a_missing_file_says_so(comfy_dirs):
    with pytest.raises(TalkingPoseError, match="does not exist"):
        LoadTalkingPoseState().load("talkingpose/none")


# ------------------------------------------------------------------------------------------------ keypoints
@pytest.mark.parametrize("prefix, sentence", [
    ("{elsewhere}/track", "is an absolute path"),
    ("../elsewhere/track", "climbs out"),
    ("tr\x00ack", "contains a NUL character"),
    ("t" * 300, "has a folder or file name of 300 characters"),
])
def test_save_keypoints_refuses_the_prefix_and_writes_nothing(comfy_dirs, prefix, sentence):
    before = _files(comfy_dirs)
    with pytest.raises(TalkingPoseError, match=sentence):
        TalkingPoseSaveKeypoints().save(KEYPOINTS, prefix.format(elsewhere=comfy_dirs / "elsewhere"))
    assert _files(comfy_dirs) == before



@pytest.mark.parametrize("prefix, sentence", [
    ("talkingpose/CON", r"'CON' is a name Windows keeps for a device .* choose another name"),
    ("nul.backup/track", r"'nul\.backup' is a name Windows keeps for a device"),
    ("Com3", r"'Com3' is a name Windows keeps for a device"),
    ("LPT9 .old/track", r"'LPT9 \.old' is a name Windows keeps for a device"),
    ("talkingpose./track", r"'talkingpose\.' ends in a dot or a space, which Windows drops"),
    ("take 2 /track", r"'take 2 ' ends in a dot or a space"),
    ("clip:2/track", r"'clip:2' holds ':', which Windows does not allow in file names"),
    ('what?"*<>|', r"""'what\?"\*<>\|' holds '"' '\*' '<' '>' '\?' '\|', which Windows does not allow"""),
])
def test_save_keypoints_refuses_names_windows_cannot_hold_on_every_system(comfy_dirs, prefix, sentence):
    """A shared workflow must work on Windows, where most artists run ComfyUI: CON.json or a folder "take 2 "
    are lost or renamed there, so the name is refused everywhere with the reason."""
    before = _files(comfy_dirs)
    with pytest.raises(TalkingPoseError, match=rf"^The keypoint file name prefix .* cannot be used: {sentence}"):
        TalkingPoseSaveKeypoints().save(KEYPOINTS, prefix)
    assert _files(comfy_dirs) == before


def test_save_state_refuses_a_reserved_name_and_a_path_beyond_windows_limit(comfy_dirs, monkeypatch):
    with pytest.raises(TalkingPoseError, match=r"^The state file name 'aux' cannot be used: 'aux' is a name Windows "
                                               r"keeps for a device"):
        SaveTalkingPoseState().save(_state(), "aux", False)
    name = "/".join(["d" * 50] * 4) + "/state"  # fine on Linux; on Windows the save would pass MAX_PATH
    monkeypatch.setattr(file_names, "on_windows", lambda: True)  # as sys.platform == "win32"
    before = _files(comfy_dirs)
    with pytest.raises(TalkingPoseError, match=r"would need paths of \d+ characters .*Windows allows 259\. Shorten "
                                               r"the name \(or the path of ComfyUI's output folder\) by at least"):
        SaveTalkingPoseState().save(_state(), name, False)
    assert _files(comfy_dirs) == before
    monkeypatch.setattr(file_names, "on_windows", lambda: False)
    SaveTalkingPoseState().save(_state(), name, False)
    assert (comfy_dirs / "output" / f"{name}.safetensors").is_file()


def test_save_keypoints_with_brackets_in_the_prefix_numbers_on(comfy_dirs):
    first = Path(TalkingPoseSaveKeypoints().save(KEYPOINTS, "take[1]/pose[a")["result"][0])
    second_frames = [dict(KEYPOINTS[0], canvas_width=32)]
    second = Path(TalkingPoseSaveKeypoints().save(second_frames, "take[1]/pose[a")["result"][0])
    assert (first.name, second.name) == ("pose[a_00001.json", "pose[a_00002.json")
    assert json.loads(first.read_text()) == KEYPOINTS and json.loads(second.read_text()) == second_frames


def test_save_keypoints_that_fail_validation_leave_no_file(comfy_dirs):
    with pytest.raises(TalkingPoseError, match="canvas_width"):
        TalkingPoseSaveKeypoints().save([{"people": [], "canvas_width": -1, "canvas_height": 8}], "bad/track")
    assert not list((comfy_dirs / "output").rglob("*.json"))


@pytest.mark.parametrize("name, sentence", [
    ("{elsewhere}/secret.json", "is an absolute path"),
    ("../elsewhere/secret.json", "climbs out"),
    ("secret\n.json", "contains a line break"),
])
def test_load_keypoints_refuses_names_outside_the_folders(comfy_dirs, name, sentence):
    name = name.format(elsewhere=comfy_dirs / "elsewhere")
    with pytest.raises(TalkingPoseError, match=sentence) as caught:
        TalkingPoseLoadKeypoints().load(name)
    assert SECRET not in str(caught.value)
    message = TalkingPoseLoadKeypoints.VALIDATE_INPUTS(name)
    assert isinstance(message, str) and sentence in message
    assert math.isnan(TalkingPoseLoadKeypoints.IS_CHANGED(name))


def test_load_keypoints_lists_files_and_reads_the_input_folder(comfy_dirs):
    saved = Path(TalkingPoseSaveKeypoints().save(KEYPOINTS, "talkingpose/pose_keypoints")["result"][0])
    (comfy_dirs / "input" / "shared.json").write_text(json.dumps(KEYPOINTS))
    choices = TalkingPoseLoadKeypoints.INPUT_TYPES()["required"]["path"][0]
    assert choices == ["talkingpose/pose_keypoints_00001.json", "shared.json [input]"]
    assert saved == comfy_dirs / "output" / choices[0]
    assert TalkingPoseLoadKeypoints().load("shared.json [input]")[0] == KEYPOINTS
    assert TalkingPoseLoadKeypoints().load(choices[0])[0] == KEYPOINTS


def test_keypoint_errors_do_not_repeat_the_file_content(comfy_dirs):
    (comfy_dirs / "output" / "bad.json").write_text(json.dumps([{"people": [], "canvas_width": SECRET,
                                                                 "canvas_height": 8}]))
    with pytest.raises(TalkingPoseError, match="'canvas_width' must be a whole number of pixels") as caught:
        TalkingPoseLoadKeypoints().load("bad.json")
    assert SECRET not in str(caught.value)
    (comfy_dirs / "output" / "latin1.json").write_bytes(b'["\xff' + SECRET.encode() + b'"]')
    with pytest.raises(TalkingPoseError, match="not UTF-8 text") as caught:
        TalkingPoseLoadKeypoints().load("latin1.json")
    assert SECRET not in str(caught.value) and "0xff" not in str(caught.value)


# ------------------------------------------------------------------------------------------------ the rules
def test_plain_names_pass_unchanged():
    for name in ("state", "talkingpose/state", "a b/c-d_e.f", "\u65e5\u672c/\u540d\u524d", "x" * paths.MAX_PART_BYTES, " padded "):
        assert paths.check_name(name, "file name", writes=True) == name.strip()


def test_limit_counts_bytes_of_each_part():
    with pytest.raises(TalkingPoseError, match="folder or file name"):
        paths.check_name("é" * 101, "file name", writes=True)  # 202 bytes in UTF-8
    with pytest.raises(TalkingPoseError, match="characters long"):
        paths.check_name("/".join(["x" * 100] * 11), "file name", writes=False)
