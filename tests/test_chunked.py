"""Long renders in pieces: VideoHelperSuite meta-batch chunks, Save/Load State across queue runs, bad pieces."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from talkingpose.errors import TalkingPoseError
from talkingpose.vae_clip import load_image_encoder, load_vae
from nodes.model_nodes import LoadTalkingPoseModel, TalkingPoseAppearanceEncode, TalkingPoseClosedLoopSampler
from nodes.state_nodes import LoadTalkingPoseState, SaveTalkingPoseState

SIZE = 64
SETTINGS = dict(seed=9, steps=2, cfg=3.5, beta=0.05)


class FakeBatchManager:
    """The attributes of VideoHelperSuite's BatchManager that a meta-batch run relies on."""

    def __init__(self, frames_per_batch, unique_id="7"):
        self.frames_per_batch = frames_per_batch
        self.unique_id = unique_id
        self.inputs, self.outputs = {}, {}


def _prompt(manager, chunk):
    return {manager.unique_id: {"inputs": {"frames_per_batch": manager.frames_per_batch, "requeue": chunk}}}


@pytest.fixture(scope="module")
def graph(tiny_weights):
    import os

    os.environ["TALKINGPOSE_MODELS"] = str(tiny_weights["model"].parent.parent)
    (model,) = LoadTalkingPoseModel().load("random-tiny/", "fp32")
    image = torch.from_numpy(np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32))
    (appearance,) = TalkingPoseAppearanceEncode().encode(model, load_image_encoder(tiny_weights["image_encoder"]),
                                                        load_vae(tiny_weights["vae"]), image, SIZE, SIZE, "stretch")
    poses = torch.from_numpy(np.random.default_rng(1).random((10, 48, 48, 3), dtype=np.float32))
    one_shot, _ = TalkingPoseClosedLoopSampler().sample(model, appearance, poses, **SETTINGS)
    return model, appearance, poses, one_shot["samples"]


def _chunk(graph, manager, chunk, frames, node_id="3"):
    model, appearance, poses, _ = graph
    latent, state = TalkingPoseClosedLoopSampler().sample(
        model, appearance, poses[frames], **SETTINGS, meta_batch=manager, unique_id=node_id, prompt=_prompt(manager, chunk))
    return latent["samples"], state


def test_chunked_meta_batch_render_equals_one_shot(graph):
    manager = FakeBatchManager(frames_per_batch=4)
    pieces = [_chunk(graph, manager, i, slice(4 * i, 4 * i + 4))[0] for i in range(3)]
    chunked = torch.cat(pieces)
    assert chunked.shape[0] == 10
    assert (chunked - graph[3]).abs().max().item() <= 1e-5


def test_chunked_new_render_on_the_same_manager_starts_over(graph):
    manager = FakeBatchManager(frames_per_batch=4)
    _chunk(graph, manager, 0, slice(0, 4))
    _chunk(graph, manager, 1, slice(4, 8))
    again, state = _chunk(graph, manager, 0, slice(0, 4))  # requeue 0: VideoHelperSuite started a new render
    assert state.next_frame == 4
    torch.testing.assert_close(again, graph[3][:4], rtol=0, atol=1e-5)


def test_chunked_manager_found_through_the_sampler_link_when_its_unique_id_is_cleared(graph):
    # VideoHelperSuite clears the manager's unique_id when a render ends and sets it only when the manager node runs;
    # ComfyUI skips running it when its inputs equal the previous run's (e.g. after a one-chunk render). The chunk
    # number still comes from the manager the sampler's meta_batch input links to in the prompt.
    model, appearance, poses, one_shot = graph
    manager = FakeBatchManager(frames_per_batch=4, unique_id=None)
    pieces = []
    for chunk in range(3):
        prompt = {"12": {"class_type": "VHS_BatchManager", "inputs": {"frames_per_batch": 4, "requeue": chunk}},
                  "3": {"class_type": "TalkingPoseClosedLoopSampler", "inputs": {"meta_batch": ["12", 0]}}}
        latent, state = TalkingPoseClosedLoopSampler().sample(
            model, appearance, poses[4 * chunk:4 * chunk + 4], **SETTINGS, meta_batch=manager, unique_id="3", prompt=prompt)
        pieces.append(latent["samples"])
    assert state.next_frame == 10
    assert (torch.cat(pieces) - one_shot).abs().max().item() <= 1e-5


def test_chunked_out_of_order_or_skipped_chunks_are_refused(graph):
    manager = FakeBatchManager(frames_per_batch=4)
    _chunk(graph, manager, 0, slice(0, 4))
    with pytest.raises(TalkingPoseError, match="out of order: chunk 3 follows chunk 1"):
        _chunk(graph, manager, 2, slice(8, 10))
    fresh = FakeBatchManager(frames_per_batch=4)
    with pytest.raises(TalkingPoseError, match="no state from chunk 1"):
        _chunk(graph, fresh, 1, slice(4, 8))
    short = FakeBatchManager(frames_per_batch=4)
    _chunk(graph, short, 0, slice(0, 3))  # a chunk that delivered fewer frames than the batch size
    with pytest.raises(TalkingPoseError, match="frames skipped: 3 frames were made before chunk 2"):
        _chunk(graph, short, 1, slice(4, 8))


def test_chunked_two_samplers_on_one_manager_keep_separate_loops(graph):
    manager = FakeBatchManager(frames_per_batch=5)
    a0, _ = _chunk(graph, manager, 0, slice(0, 5), node_id="A")
    b0, _ = _chunk(graph, manager, 0, slice(0, 5), node_id="B")
    a1, _ = _chunk(graph, manager, 1, slice(5, 10), node_id="A")
    assert (torch.cat([a0, a1]) - graph[3]).abs().max().item() <= 1e-5


def test_chunked_queue_runs_through_save_and_load_state_equal_one_shot(graph, tmp_path, monkeypatch):
    monkeypatch.setattr("nodes.backend.host.output_directory", lambda: tmp_path)
    model, appearance, poses, one_shot = graph
    first, state = TalkingPoseClosedLoopSampler().sample(model, appearance, poses[:6], **SETTINGS)
    SaveTalkingPoseState().save(state, "long/state", False)
    loaded, next_frame, pose_state = LoadTalkingPoseState().load("long/state")
    assert next_frame == 6 and (tmp_path / "long" / "state.safetensors").is_file()
    rest, _ = TalkingPoseClosedLoopSampler().sample(model, appearance, poses[next_frame:], **SETTINGS, state=loaded)
    assert (torch.cat([first["samples"], rest["samples"]]) - one_shot).abs().max().item() <= 1e-5


def test_chunked_state_of_another_render_is_refused_and_never_overwritten(graph, tmp_path, monkeypatch):
    monkeypatch.setattr("nodes.backend.host.output_directory", lambda: tmp_path)
    model, appearance, poses, _ = graph
    _, state = TalkingPoseClosedLoopSampler().sample(model, appearance, poses[:2], **SETTINGS)
    SaveTalkingPoseState().save(state, "s", False)
    other = dict(SETTINGS, seed=10, beta=0.1)
    _, other_state = TalkingPoseClosedLoopSampler().sample(model, appearance, poses[:2], **other)
    with pytest.raises(TalkingPoseError, match=r"holds the state of another render \(seed 9 in the state, 10 now; beta 0.05"):
        SaveTalkingPoseState().save(other_state, "s", False)
    assert LoadTalkingPoseState().load("s")[0].settings.seed == 9  # untouched
    with pytest.raises(TalkingPoseError, match=r"seed 9 in the state, 10 now.*'control after generate' is not 'fixed': "
                                                r"set it to 'fixed' and the seed back to 9"):
        TalkingPoseClosedLoopSampler().sample(model, appearance, poses[2:4], **other, state=state)
    with pytest.raises(TalkingPoseError, match=r"beta 0.05 in the state, 0.1 now") as refused:
        TalkingPoseClosedLoopSampler().sample(model, appearance, poses[2:4], **dict(other, seed=9), state=state)
    assert "control after generate" not in str(refused.value)  # the hint only where the seed differs


def test_chunked_truncated_state_file_is_refused(graph, tmp_path, monkeypatch):
    monkeypatch.setattr("nodes.backend.host.output_directory", lambda: tmp_path)
    model, appearance, poses, _ = graph
    _, state = TalkingPoseClosedLoopSampler().sample(model, appearance, poses[:1], **SETTINGS)
    _, path = SaveTalkingPoseState().save(state, "t", False)["result"]
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(TalkingPoseError, match="damaged or not a TalkingPose state"):
        LoadTalkingPoseState().load("t")
