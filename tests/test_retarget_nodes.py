"""Retarget / Smooth Pose Keypoints nodes, Pose Extract's alignment and smoothing options, the pose state across
VideoHelperSuite meta-batch chunks and through Save/Load TalkingPose State."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from helpers import PACK_ROOT, SHARED
from pose_tracks import SOURCE_LENGTHS, driving_track, person, pixels
from nodes.pose_nodes import TalkingPoseDrawKeypoints, TalkingPoseExtract
from nodes.retarget_nodes import TalkingPoseRetargetKeypoints, TalkingPoseSmoothKeypoints
from nodes.state_nodes import LoadTalkingPoseState, SaveTalkingPoseState
from talkingpose.errors import TalkingPoseError
from talkingpose.pose import PoseTrackState, from_pose_keypoints, process_track, to_pose_keypoints
from talkingpose.pose.draw import LIMBS

GOLDEN = SHARED / "golden" / "dwpose-a"
SOURCE = person(SOURCE_LENGTHS, neck=(300.0, 180.0), hand_size=15.0, face_size=45.0)


class FakeBatchManager:
    """What a VideoHelperSuite Meta Batch Manager offers the nodes (as in test_chunked.py)."""

    def __init__(self, frames_per_batch, unique_id="12"):
        self.frames_per_batch, self.unique_id = frames_per_batch, unique_id


def _prompt(manager, chunk):
    return {manager.unique_id: {"class_type": "VHS_BatchManager",
                                "inputs": {"frames_per_batch": manager.frames_per_batch, "requeue": chunk}}}


def _image(path):
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).float()[None] / 255.0


def test_retarget_node_gives_source_lengths_and_composes_with_draw():
    driving = to_pose_keypoints(driving_track(12))
    out, state = TalkingPoseRetargetKeypoints().retarget(driving, "retarget", 0.0, 0,
                                                         source_pose_keypoint=to_pose_keypoints([SOURCE]))
    assert isinstance(state, PoseTrackState) and state.frames == 12 and state.retarget is not None
    poses = from_pose_keypoints(out)
    for frame in poses:
        body = pixels(frame, frame.body)
        for bone in LIMBS:
            assert np.linalg.norm(body[bone[1]] - body[bone[0]]) == pytest.approx(SOURCE_LENGTHS[bone], rel=0.01)
    (images,) = TalkingPoseDrawKeypoints().draw(out, 256, 256)
    assert images.shape == (12, 256, 256, 3) and images.amax() > 0


def test_retarget_node_with_a_source_image_runs_dwpose(models_env):
    frame = _image(GOLDEN / "det_1280x720_input.png")
    out, state = TalkingPoseRetargetKeypoints().retarget(to_pose_keypoints(driving_track(4)), "retarget", 0.5, 0,
                                                         source_image=frame)
    assert (out[0]["canvas_width"], out[0]["canvas_height"]) == (896, 512)  # the source's detection canvas
    assert state.smoother is not None and state.smoother.frames == 4


def test_retarget_node_sources_are_checked():
    driving = to_pose_keypoints(driving_track(3))
    node = TalkingPoseRetargetKeypoints()
    with pytest.raises(TalkingPoseError, match="Connect source_image"):
        node.retarget(driving, "retarget", 0.0, 0)
    with pytest.raises(TalkingPoseError, match="has 2 frames"):
        node.retarget(driving, "retarget", 0.0, 0, source_pose_keypoint=to_pose_keypoints([SOURCE, SOURCE]))
    with pytest.raises(TalkingPoseError, match="source shows no person"):
        node.retarget(driving, "retarget", 0.0, 0, source_pose_keypoint=[{"people": [], "canvas_width": 64,
                                                                          "canvas_height": 64}])


def test_smooth_node_strength_zero_is_the_input_itself_and_the_given_state_is_not_changed():
    driving = to_pose_keypoints(driving_track(10))
    same, _ = TalkingPoseSmoothKeypoints().smooth(driving, 0.0)
    assert same is driving
    first, state = TalkingPoseSmoothKeypoints().smooth(driving[:5], 0.5)
    saved = state.to_dict()
    a, _ = TalkingPoseSmoothKeypoints().smooth(driving[5:], 0.5, pose_state=state)
    b, _ = TalkingPoseSmoothKeypoints().smooth(driving[5:], 0.5, pose_state=state)  # a cached output used twice
    assert a == b and state.to_dict() == saved
    # The node's filter is causal: five frames, then the rest continued from their state, are the ten at once.
    whole, _ = TalkingPoseSmoothKeypoints().smooth(driving, 0.5)
    streamed, _ = process_track(from_pose_keypoints(driving), strength=0.5, streaming=True)
    assert first + a == whole == to_pose_keypoints(streamed)


@pytest.mark.parametrize("strength", [0.0, 0.25, 0.5, 0.6, 0.75, 1.0])
def test_meta_batch_chunks_equal_one_shot_with_the_first_chunk_as_calibration(strength):
    track = to_pose_keypoints(driving_track(20))
    source = to_pose_keypoints([SOURCE])
    one_shot, _ = TalkingPoseRetargetKeypoints().retarget(track, "retarget", strength, 8, source_pose_keypoint=source)
    manager = FakeBatchManager(8)
    chunked = []
    for chunk in range(3):
        out, state = TalkingPoseRetargetKeypoints().retarget(
            track[8 * chunk:8 * chunk + 8], "retarget", strength, 0, source_pose_keypoint=source, meta_batch=manager,
            unique_id="5", prompt=_prompt(manager, chunk))
        chunked += out
    assert chunked == one_shot and state.frames == 20
    fitted, _ = process_track(from_pose_keypoints(track), source=SOURCE, mode="retarget", calibration_frames=8)
    streamed, _ = process_track(fitted, strength=strength, streaming=True)
    assert chunked == to_pose_keypoints(streamed)
    # Measured on the whole video instead, the fit differs: that is why a chunked render states its calibration.
    everything, _ = TalkingPoseRetargetKeypoints().retarget(track, "retarget", 0.6, 0, source_pose_keypoint=source)
    assert everything != one_shot


def test_meta_batch_chunks_out_of_order_or_without_a_first_chunk_are_refused():
    track = to_pose_keypoints(driving_track(16))
    manager = FakeBatchManager(8)
    with pytest.raises(TalkingPoseError, match="no state from chunk 1"):
        TalkingPoseSmoothKeypoints().smooth(track[8:], 0.5, meta_batch=manager, unique_id="5", prompt=_prompt(manager, 1))
    TalkingPoseSmoothKeypoints().smooth(track[:8], 0.5, meta_batch=manager, unique_id="5", prompt=_prompt(manager, 0))
    with pytest.raises(TalkingPoseError, match="out of order: chunk 3 follows chunk 1"):
        TalkingPoseSmoothKeypoints().smooth(track[8:], 0.5, meta_batch=manager, unique_id="5", prompt=_prompt(manager, 2))
    short = FakeBatchManager(8)
    TalkingPoseSmoothKeypoints().smooth(track[:5], 0.5, meta_batch=short, unique_id="5", prompt=_prompt(short, 0))
    with pytest.raises(TalkingPoseError, match="poses of 5 frames were made before chunk 2"):
        TalkingPoseSmoothKeypoints().smooth(track[8:], 0.5, meta_batch=short, unique_id="5", prompt=_prompt(short, 1))


def test_pose_extract_retargets_onto_the_source_and_carries_its_state_across_chunks(models_env):
    driving = _image(GOLDEN / "det_512x512_input.png").repeat(4, 1, 1, 1)
    source = _image(GOLDEN / "det_1280x720_input.png")
    node = TalkingPoseExtract()
    images, kps, state = node.extract(driving, 256, 256, True, True, True, source_image=source, alignment="retarget",
                                      smoothing=0.5)
    assert images.shape == (4, 256, 256, 3) and state.retarget is not None and state.frames == 4
    assert (kps[0]["canvas_width"], kps[0]["canvas_height"]) == (896, 512)
    manager = FakeBatchManager(2)
    chunks = [node.extract(driving[2 * k:2 * k + 2], 256, 256, True, True, True, source_image=source,
                           alignment="retarget", smoothing=0.5, meta_batch=manager, unique_id="6",
                           prompt=_prompt(manager, k)) for k in range(2)]
    assert torch.equal(torch.cat([c[0] for c in chunks]), images)  # the chunks equal the one-shot run
    assert chunks[1][2].frames == 4
    # Without the source image the alignment options change nothing: the poses stay as they are.
    plain, _, _ = node.extract(driving, 256, 256, True, True, True)
    unfitted, _, _ = node.extract(driving, 256, 256, True, True, True, alignment="retarget")
    assert torch.equal(plain, unfitted)


def test_save_and_load_state_carry_the_pose_state(tmp_path, monkeypatch):
    monkeypatch.setattr("nodes.backend.host.output_directory", lambda: tmp_path)
    from talkingpose.sampler import SamplerSettings, SamplerState

    _, pose_state = TalkingPoseRetargetKeypoints().retarget(to_pose_keypoints(driving_track(6)), "retarget", 0.5, 0,
                                                            source_pose_keypoint=to_pose_keypoints([SOURCE]))
    sampler_state = SamplerState(torch.zeros(4, 8, 8), torch.ones(4, 8, 8), 6, SamplerSettings(), 64, 64)
    SaveTalkingPoseState().save(sampler_state, "s", False, pose_state=pose_state)
    assert sampler_state.extra == {}  # the input state object is left as it was
    loaded, next_frame, loaded_pose = LoadTalkingPoseState().load("s")
    assert next_frame == 6 and loaded_pose.to_dict() == pose_state.to_dict()
    # Continuing from the loaded state equals continuing from the one in memory.
    more = to_pose_keypoints(driving_track(10)[6:])
    a, _ = TalkingPoseRetargetKeypoints().retarget(more, "retarget", 0.5, 0, source_pose_keypoint=to_pose_keypoints([SOURCE]),
                                                   pose_state=loaded_pose)
    b, _ = TalkingPoseRetargetKeypoints().retarget(more, "retarget", 0.5, 0, source_pose_keypoint=to_pose_keypoints([SOURCE]),
                                                   pose_state=pose_state)
    assert a == b
    early = SamplerState(torch.zeros(4, 8, 8), torch.ones(4, 8, 8), 3, SamplerSettings(), 64, 64)
    with pytest.raises(TalkingPoseError, match="posed 6 frames but the sampler state is at frame 3"):
        SaveTalkingPoseState().save(early, "t", False, pose_state=pose_state)
    SaveTalkingPoseState().save(early, "u", False)
    assert LoadTalkingPoseState().load("u")[2] is None


def test_a_pose_state_saved_with_the_old_alignment_spelling_continues_the_same():
    """Pose states saved before the alignment had one spelling say `mode: full` / `align`; they load as
    retarget / similarity and continue exactly as today's."""
    source = to_pose_keypoints([SOURCE])
    more = to_pose_keypoints(driving_track(10)[6:])
    for alignment, old in (("retarget", "full"), ("similarity", "align")):
        _, state = TalkingPoseRetargetKeypoints().retarget(to_pose_keypoints(driving_track(6)), alignment, 0.5, 0,
                                                           source_pose_keypoint=source)
        saved = state.to_dict()
        assert saved["mode"] == alignment
        old_state = PoseTrackState.from_dict({**saved, "mode": old})
        assert old_state.to_dict() == saved
        a, _ = TalkingPoseRetargetKeypoints().retarget(more, alignment, 0.5, 0, source_pose_keypoint=source,
                                                       pose_state=old_state)
        b, _ = TalkingPoseRetargetKeypoints().retarget(more, alignment, 0.5, 0, source_pose_keypoint=source,
                                                       pose_state=state)
        assert a == b


# What the pose alignment was called before it had one name: the command line's `--retarget off|align|full` and
# `pose retarget --mode full|align`, the Retarget node's `fit`, and "the (pose) fit" in the text around them.
OLD_ALIGNMENT_SPELLINGS = re.compile(r"--retarget\b|--mode (full|align)\b|\{off,align,full\}|`fit`: retarget|"
                                     r"\b(the|pose|its) fit\b|fit to the (photo|source)")


def test_the_pose_alignment_has_one_name_in_nodes_and_docs():
    """One name, `alignment`, and one set of values (the engine's MODES) for fitting the driving poses to the
    source person; `fit` is left to Appearance Encode's stretch / crop / pad."""
    from nodes import NODE_CLASS_MAPPINGS
    from talkingpose.pose import MODES

    named = {}
    for key, cls in NODE_CLASS_MAPPINGS.items():
        for section in cls.INPUT_TYPES().values():
            for name, spec in section.items():
                if name in ("alignment", "fit"):
                    named[(key, name)] = spec[0]
    assert named.pop(("TalkingPoseAppearanceEncode", "fit")) == ["stretch", "crop", "pad"]
    assert set(named) == {("TalkingPoseExtract", "alignment"), ("TalkingPoseRetargetKeypoints", "alignment")}
    assert all(set(choices) <= set(MODES) for choices in named.values()), named
    texts = [PACK_ROOT / "README.md", *sorted((PACK_ROOT / "docs").glob("*.md")),
             *sorted((PACK_ROOT / "web" / "docs").glob("*.md")),
             *sorted((PACK_ROOT / "example_workflows").glob("*.json")), *sorted((PACK_ROOT / "nodes").glob("*.py"))]
    found = [f"{path.relative_to(PACK_ROOT)}: {m.group(0)!r}" for path in texts
             for m in OLD_ALIGNMENT_SPELLINGS.finditer(path.read_text(encoding="utf-8"))]
    assert not found, found
