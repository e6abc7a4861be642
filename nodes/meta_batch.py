"""Chunks of a VideoHelperSuite Meta Batch Manager: which chunk this run is, and a node's state carried between
chunks.

The manager re-queues the whole workflow once per chunk of frames and passes the same manager object to every
run; the chunk number is the manager's `requeue` input in the prompt (0 = a new render). A node that continues
something across chunks (the sampler its closed loop, Pose Extract and the keypoint nodes their fit and
smoothing) keeps it on that object between runs, under an attribute of its own, keyed by the node's id.
"""
from __future__ import annotations

_MANAGER_TYPE = "VHS_BatchManager"


def chunk_number(meta_batch, prompt, node_id=None) -> int:
    """This run's chunk number. The manager node is the one the node's own meta_batch input links to in the
    prompt. The manager object's unique_id is only a fallback: VideoHelperSuite clears it when a render ends and
    sets it again only when the manager node runs, and ComfyUI reuses the cached manager without running it when
    its inputs equal the previous run's (e.g. after a render that was a single chunk)."""
    if prompt is None:
        return 0
    manager_id = None
    link = (prompt.get(str(node_id)) or {}).get("inputs", {}).get("meta_batch") if node_id is not None else None
    if isinstance(link, (list, tuple)) and link and (prompt.get(str(link[0])) or {}).get("class_type") == _MANAGER_TYPE:
        manager_id = str(link[0])
    if manager_id is None:
        manager_id = getattr(meta_batch, "unique_id", None)
    if manager_id is None or manager_id not in prompt:
        return 0
    return int(prompt[manager_id].get("inputs", {}).get("requeue", 0))


class ChunkCarry:
    """One kind of state carried from chunk to chunk, with the frames made so far, so that a chunk arriving out
    of order, after skipped frames or without its predecessor's state is refused instead of rendering a seam.

    `attribute` is where it lives on the manager object; `missing` is the sentence for a chunk whose predecessor
    left nothing, formatted with `chunk` (this chunk, from 1) and `previous` (the one before it, from 1); `made`
    says what the frames made so far are, formatted with `frames`.
    """

    def __init__(self, attribute: str, missing: str, made: str = "{frames} frames were made"):
        self.attribute, self.missing, self.made = attribute, missing, made

    def carried(self, meta_batch, node_id, chunk: int, given):
        """The state to continue from in this chunk: `given` (None, or an explicitly connected state) for the
        first chunk — a new render — else the one the previous chunk left."""
        from talkingpose.errors import TalkingPoseError

        if chunk == 0:
            return given
        carried = getattr(meta_batch, self.attribute, {}).get(node_id)
        if carried is None:
            raise TalkingPoseError(self.missing.format(chunk=chunk + 1, previous=chunk))
        last_chunk, state, frames_done = carried
        if last_chunk != chunk - 1:
            raise TalkingPoseError(
                f"Meta batch chunks arrived out of order: chunk {chunk + 1} follows chunk {last_chunk + 1}. "
                "Queue the workflow again from the start."
            )
        expected = getattr(meta_batch, "frames_per_batch", None)
        if expected and frames_done != chunk * expected:
            raise TalkingPoseError(
                f"Meta batch frames skipped: {self.made.format(frames=frames_done)} before chunk {chunk + 1}, but "
                f"chunks of {expected} frames put it at frame {chunk * expected}. Queue the workflow again from the start."
            )
        return state

    def carry(self, meta_batch, node_id, chunk: int, state, frames: int) -> None:
        """Leave the state on the manager for the next chunk, with the frames this render (this queueing) made."""
        states = getattr(meta_batch, self.attribute, None)
        if states is None:
            states = {}
            setattr(meta_batch, self.attribute, states)
        previous = states.get(node_id)
        done_before = previous[2] if previous is not None and chunk > 0 else 0
        states[node_id] = (chunk, state, done_before + frames)
