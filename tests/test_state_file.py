"""Sampler state files: one read per load, a checksum of the tensors, full validation, unique temporary names,
and temporary files of killed saves cleaned up by the next save."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from talkingpose import state_file
from talkingpose.errors import TalkingPoseError
from talkingpose.sampler import SamplerSettings, SamplerState

from helpers import PACK_ROOT


def _state(next_frame=3, width=64, height=64, fill=None):
    shape = (4, height // 8, width // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(next_frame))
    last = None if next_frame == 0 else torch.full(shape, float(next_frame if fill is None else fill))
    return SamplerState(noise, last, next_frame, SamplerSettings(steps=2, seed=5), width, height, "model-fp", "look-fp",
                        {"note": "x"})


def _write_raw(path, meta, tensors):
    save_file(tensors, str(path), metadata={"talkingpose": json.dumps(meta)})
    return path


def _parts(path):
    """(metadata, tensors) of a saved state, to change one thing and write it back."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["talkingpose"]), {k: f.get_tensor(k) for k in f.keys()}


def test_saved_state_loads_back_with_everything_and_a_tensor_checksum(tmp_path):
    state = _state()
    path = state.save(tmp_path / "s.safetensors")
    meta, tensors = _parts(path)
    assert meta["format"] == "talkingpose-state/2"
    assert meta["tensors_sha256"] == state_file.tensors_checksum(tensors)
    back = SamplerState.load(path)
    assert torch.equal(back.noise, state.noise) and torch.equal(back.last_latent, state.last_latent)
    assert (back.next_frame, back.settings, back.width, back.height) == (3, state.settings, 64, 64)
    assert (back.model_fingerprint, back.appearance_fingerprint, back.extra) == ("model-fp", "look-fp", {"note": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]  # no temporary file left


def test_metadata_of_one_save_with_tensors_of_another_is_refused(tmp_path):
    # What a load that read the header of one save and the data of the next used to return, silently.
    meta, _ = _parts(_state(3).save(tmp_path / "a.safetensors"))
    _, tensors = _parts(_state(7).save(tmp_path / "b.safetensors"))
    mixed = _write_raw(tmp_path / "mixed.safetensors", meta, tensors)
    with pytest.raises(TalkingPoseError, match="do not match the checksum"):
        SamplerState.load(mixed)


def _mutations():
    def set_meta(**changes):
        return lambda meta, tensors: meta.update(changes)

    def drop(key):
        return lambda meta, tensors: meta.pop(key)

    def tensor(name, value):
        def change(meta, tensors):
            tensors[name] = value(tensors[name]).contiguous()
            meta["tensors_sha256"] = state_file.tensors_checksum(tensors)  # only the content is wrong
        return change

    def flip_bit(meta, tensors):
        raw = tensors["last_latent"].view(torch.int32).clone()
        raw.view(-1)[5] ^= 1 << 3  # a low mantissa bit: a plausible value that only the checksum catches
        tensors["last_latent"] = raw.view(torch.float32)

    def nan_at(t):
        t = t.clone()
        t.view(-1)[0] = float("nan")
        return t

    return {
        "next_frame -5": (set_meta(next_frame=-5), "next_frame must be a whole number from 0"),
        "next_frame 2^70": (set_meta(next_frame=2**70), "next_frame must be a whole number from 0"),
        "next_frame 'abc'": (set_meta(next_frame="abc"), "next_frame must be a whole number"),
        "next_frame true": (set_meta(next_frame=True), "next_frame must be a whole number"),
        "cfg as text": (lambda m, t: m["settings"].update(cfg="3.5"), "cfg must be a finite number"),
        "seed 1.5": (lambda m, t: m["settings"].update(seed=1.5), "seed must be a whole number"),
        "unknown field": (set_meta(colour="red"), r"unknown fields \['colour'\]"),
        "unknown setting": (lambda m, t: m["settings"].update(eta=0.0), "'settings' must have exactly the fields"),
        "missing width": (drop("width"), r"fields \['width'\] are missing"),
        "odd size": (set_meta(width=100), "not a multiple of 8"),
        "no format": (drop("format"), "not a TalkingPose sampler state"),
        "NaN noise": (tensor("noise", nan_at), "'noise' holds NaN or infinite values"),
        "inf latent": (tensor("last_latent", lambda t: t * float("inf")), "'last_latent' holds NaN or infinite"),
        "huge latent": (tensor("last_latent", lambda t: t * 1e30), "beyond"),
        "wrong shape": (tensor("noise", lambda t: torch.zeros(4, 4, 4)), r"float32 \[channels, 8, 8\]"),
        "float64": (tensor("noise", lambda t: t.double()), r"float32 \[channels, 8, 8\]"),
        "no last latent": (lambda m, t: (t.pop("last_latent"), m.update(tensors_sha256=state_file.tensors_checksum(t))),
                           "the last latent is missing"),
        "flipped bit": (flip_bit, "do not match the checksum"),
    }


@pytest.mark.parametrize("case", list(_mutations()))
def test_a_damaged_or_tampered_state_is_refused_with_what_is_wrong(tmp_path, case):
    change, message = _mutations()[case]
    meta, tensors = _parts(_state().save(tmp_path / "good.safetensors"))
    change(meta, tensors)
    path = _write_raw(tmp_path / "bad.safetensors", meta, tensors)
    with pytest.raises(TalkingPoseError, match=message) as caught:
        SamplerState.load(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"abc", b"\xff" * 8 + b"{}", b"\x02\x00\x00\x00\x00\x00\x00\x00{}"])
def test_garbage_is_refused_as_damaged(tmp_path, content):
    path = tmp_path / "g.safetensors"
    path.write_bytes(content)
    with pytest.raises(TalkingPoseError, match="damaged or not a TalkingPose state"):
        SamplerState.load(path)


def test_version_1_files_without_checksum_still_load_and_are_still_checked(tmp_path):
    meta, tensors = _parts(_state().save(tmp_path / "s.safetensors"))
    meta["format"] = "talkingpose-state/1"
    del meta["tensors_sha256"]
    assert SamplerState.load(_write_raw(tmp_path / "v1.safetensors", meta, tensors)).next_frame == 3
    tensors["noise"][0, 0, 0] = float("nan")
    with pytest.raises(TalkingPoseError, match="NaN"):
        SamplerState.load(_write_raw(tmp_path / "v1nan.safetensors", meta, tensors))


def test_a_full_disk_while_saving_keeps_the_old_file_and_says_so(tmp_path, monkeypatch):
    path = _state(3).save(tmp_path / "s.safetensors")
    real_open = open

    def full_disk_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode and str(file).endswith(".tmp"):
            def write(data):
                raise OSError(28, "No space left on device")
            handle.write = write
        return handle

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(TalkingPoseError, match="Could not write the state file .*No space left on device"):
        _state(4).save(path)
    monkeypatch.undo()
    assert SamplerState.load(path).next_frame == 3
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_files_of_a_killed_save_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "s[1].safetensors"  # a glob pattern character in the name changes nothing
    dead = tmp_path / f".{path.name}.{_dead_pid()}.x1y2z3.tmp"
    dead.write_bytes(b"\0" * 2_000_000)
    alive = tmp_path / f".{path.name}.{os.getppid()}.a1b2c3.tmp"  # another live process's save in progress
    alive.write_bytes(b"\0")
    other = tmp_path / ".other.safetensors.1.x.tmp"
    other.write_bytes(b"\0")
    _state().save(path)
    assert not dead.exists()
    assert alive.exists() and other.exists()



def test_finding_a_dead_writer_never_signals_a_process_on_windows(tmp_path, monkeypatch):
    """On Windows os.kill with any signal but CTRL_C/CTRL_BREAK terminates the process, so asking "is pid N alive?"
    with os.kill(N, 0) would kill whatever program now has that pid. Liveness must only look."""
    def kill(*args):
        pytest.fail(f"os.kill{args} called while deciding whether a writer is alive")

    path = tmp_path / "s.safetensors"
    dead = tmp_path / f".{path.name}.{_dead_pid()}.x1y2z3.tmp"
    alive = tmp_path / f".{path.name}.{os.getppid()}.a1b2c3.tmp"
    for temporary in (dead, alive):
        temporary.write_bytes(b"\0")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(os, "kill", kill)
    _state().save(path)
    assert not dead.exists() and alive.exists()


_SAVER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    from talkingpose.sampler import SamplerSettings, SamplerState
    path, rounds, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for i in range(rounds):
        n = first + i % 2
        # every tensor value equals next_frame, so a load can tell whether header and data belong together
        t = torch.full((4, 8, 8), float(n))
        SamplerState(t, t.clone(), n, SamplerSettings(steps=1), 64, 64).save(path)
    print("done", flush=True)
""")


def test_concurrent_saves_and_loads_never_mix_two_states(tmp_path):
    path = tmp_path / "shared.safetensors"
    script = _SAVER.format(root=str(PACK_ROOT))
    savers = [subprocess.Popen([sys.executable, "-c", script, str(path), "400", str(first)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for first in (10, 20)]
    loads = 0
    while any(s.poll() is None for s in savers) or loads < 50:
        if path.exists():
            state = SamplerState.load(path)
            assert float(state.noise[0, 0, 0]) == float(state.last_latent[0, 0, 0]) == state.next_frame
            loads += 1
    for saver in savers:
        out, err = saver.communicate()
        assert saver.returncode == 0 and out.strip() == "done", err  # two savers never share a temporary file
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_save_killed_at_any_moment_leaves_the_old_file_or_the_new_one(tmp_path):
    path = tmp_path / "k.safetensors"
    script = _SAVER.format(root=str(PACK_ROOT))
    for _ in range(5):
        saver = subprocess.Popen([sys.executable, "-c", script, str(path), "100000", "30"], stdout=subprocess.PIPE)
        while not path.exists():
            pass
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        assert SamplerState.load(path).next_frame in (30, 31)
    _state().save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["k.safetensors"]
