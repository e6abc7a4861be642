"""Streaming video I/O: reading (sizes, rates, skipping by seek and by decoding), writing (frame count, fps,
colours, audio copied or re-encoded and trimmed), and the resumable segmented writer across a real crash."""
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from talkingpose import video_io
from talkingpose.errors import TalkingPoseError
from talkingpose.segmented_writer import SegmentedVideoWriter
from talkingpose.video_io import VideoReader, VideoWriter

PACK_ROOT = Path(__file__).resolve().parent.parent


def _frame(i, width=64, height=48):
    """Frame i is recognisable after lossy coding: its green level and the position of a white bar."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 1] = (i * 9) % 256
    img[:, :, 2] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    img[8:20, (i * 3) % width] = 255
    return img


def _make_source(path, n_frames=40, fps=25, audio_codec="aac", audio_seconds=3.0, container_format=None, gop=None):
    """A test clip with a 440 Hz tone that runs on past the end of the picture."""
    with av.open(str(path), "w", format=container_format) as out:
        options = {"g": str(gop)} if gop else {}
        video = out.add_stream("libx264", rate=fps, options=options)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = None
        if audio_codec:
            audio = out.add_stream(audio_codec, rate=44100)
            audio.layout = "mono"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            rate = 44100
            t = np.arange(int(rate * audio_seconds)) / rate
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            fmt = audio.codec_context.format.name
            for start in range(0, len(tone), 1024):
                chunk = tone[start : start + 1024]
                data = chunk[None, :] if fmt == "fltp" else (chunk * 32767).astype(np.int16)[None, :]
                frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
                frame.sample_rate, frame.pts = rate, start
                out.mux(audio.encode(frame))
            out.mux(audio.encode(None))
    return path


def _probe(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {
            "frames": video.frames,
            "fps": video.average_rate,
            "size": (video.codec_context.width, video.codec_context.height),
            "codec": video.codec_context.name,
            "audio": [(a.codec_context.name, float(a.duration * a.time_base)) for a in container.streams.audio],
        }
        info["decoded"] = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return info


def _closest_index(decoded, n):
    """Index of the synthetic frame a decoded frame is nearest to (checks order after lossy coding)."""
    return int(np.argmin([np.abs(decoded.astype(int) - _frame(i)).mean() for i in range(n)]))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {
        "aac": _make_source(root / "aac.mp4"),
        "pcm": _make_source(root / "pcm.mov", audio_codec="pcm_s16le"),
        "silent": _make_source(root / "silent.mp4", audio_codec=None),
        "long": _make_source(root / "long.mp4", n_frames=150, audio_codec=None, gop=12),
        "mkv": _make_source(root / "clip.mkv", n_frames=20, fps=10, audio_codec=None, container_format="matroska"),
    }


# --- reading ----------------------------------------------------------------------------------------------


def test_reader_properties_and_frames(sources):
    with VideoReader(sources["aac"]) as reader:
        assert reader.fps == Fraction(25) and reader.frame_count == 40 and len(reader) == 40
        assert reader.size == (64, 48) and reader.has_audio
        frames = list(reader)
    assert len(frames) == 40
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert [_closest_index(frames[i], 40) for i in (0, 7, 39)] == [0, 7, 39]
    with VideoReader(sources["silent"]) as reader:
        assert not reader.has_audio
    with VideoReader(sources["mkv"]) as reader:  # matroska keeps no frame count: estimated from the duration
        assert reader.fps == 10 and reader.frame_count == 20 and len(list(reader)) == 20


@pytest.mark.parametrize("start, max_frames", [(0, 5), (3, 4), (64, 6), (100, None), (137, 20), (149, 3), (160, 3)])
def test_reader_start_and_max_frames_match_full_decode(sources, start, max_frames):
    with VideoReader(sources["long"]) as reader:
        everything = list(reader)
    end = None if max_frames is None else start + max_frames
    expected = everything[start:end]
    with VideoReader(sources["long"], start=start, max_frames=max_frames) as reader:
        assert len(reader) == len(expected)
        first = list(reader)
        again = list(reader)  # iterating again starts over at `start`
    assert len(first) == len(again) == len(expected)
    for got, want, repeat in zip(first, expected, again):
        assert np.array_equal(got, want) and np.array_equal(repeat, want)


def test_reader_on_shared_sample(shared_dir):
    """The sample clips have no audio; seeking into the middle of a real mpeg4 clip gives the decoded frames."""
    path = shared_dir / "samples/driving/vid1.mp4"
    with VideoReader(path) as reader:
        assert (reader.fps, reader.frame_count, reader.size, reader.has_audio) == (23, 674, (512, 512), False)
        linear = [f for i, f in zip(range(303), reader)][300:]
    with VideoReader(path, start=300, max_frames=3) as reader:
        sought = list(reader)
    assert len(sought) == 3 and all(np.array_equal(a, b) for a, b in zip(sought, linear))


def test_reader_bad_input(tmp_path):
    with pytest.raises(TalkingPoseError, match="not found"):
        VideoReader(tmp_path / "none.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 64)
    with pytest.raises(TalkingPoseError, match="junk.mp4"):
        VideoReader(junk)
    with pytest.raises(TalkingPoseError, match="negative"):
        VideoReader(junk, start=-1)


# --- writing ----------------------------------------------------------------------------------------------


def test_writer_frames_fps_and_colours(tmp_path):
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 25, (64, 48)) as writer:
        for i in range(30):
            writer.write(_frame(i))
        assert writer.frames_written == 30 and writer.codec == "libx264" and not writer.has_audio
    info = _probe(out)
    assert info["frames"] == 30 and len(info["decoded"]) == 30
    assert info["fps"] == 25 and info["size"] == (64, 48) and info["audio"] == []
    assert [_closest_index(info["decoded"][i], 30) for i in range(0, 30, 6)] == list(range(0, 30, 6))
    assert np.abs(info["decoded"][10].astype(int) - _frame(10)).mean() < 3.0


def test_writer_odd_size_ntsc_rate_and_mpeg4(tmp_path):
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, Fraction(30000, 1001), (65, 49), codec="mpeg4") as writer:
        assert writer.size == (64, 48)
        for i in range(12):
            writer.write(_frame(i, 65, 49))
    info = _probe(out)
    assert info["codec"] == "mpeg4" and info["size"] == (64, 48)
    assert info["frames"] == 12 and info["fps"] == Fraction(30000, 1001)
    assert np.abs(info["decoded"][5].astype(int) - _frame(5, 65, 49)[:48, :64]).mean() < 4.0


def test_writer_copies_aac_and_trims_it(tmp_path, sources):
    out = tmp_path / "with_audio.mp4"
    with VideoWriter(out, 25, (64, 48), audio_from=sources["aac"]) as writer:
        assert writer.has_audio
        for i in range(30):
            writer.write(_frame(i))
    info = _probe(out)
    assert info["frames"] == 30
    [(codec, seconds)] = info["audio"]
    # the source tone lasts 3 s; the copy stops within one AAC packet (23 ms) of the 1.2 s of video
    assert codec == "aac" and 1.19 <= seconds <= 1.25


def test_writer_reencodes_other_audio_to_aac(tmp_path, sources):
    out = tmp_path / "pcm_audio.mp4"
    with VideoWriter(out, 25, (64, 48), audio_from=sources["pcm"]) as writer:
        for i in range(30):
            writer.write(_frame(i))
    info = _probe(out)
    [(codec, seconds)] = info["audio"]
    assert codec == "aac" and 1.15 <= seconds <= 1.3 and info["frames"] == 30
    with av.open(str(out)) as container:
        samples = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert 0.15 < np.abs(samples).max() < 0.5  # the 0.3-amplitude tone survived, not silence


def test_writer_without_source_audio_and_bad_frames(tmp_path, sources):
    out = tmp_path / "silent.mp4"
    with VideoWriter(out, 25, (64, 48), audio_from=sources["silent"]) as writer:
        assert not writer.has_audio
        writer.write(_frame(0))
        with pytest.raises(TalkingPoseError, match="same size"):
            writer.write(_frame(1, 32, 32))
        with pytest.raises(TalkingPoseError, match="RGB uint8"):
            writer.write(_frame(1).astype(np.float32))
    assert _probe(out)["audio"] == [] and _probe(out)["frames"] == 1
    with pytest.raises(TalkingPoseError, match="already closed"):
        writer.write(_frame(2))
    with pytest.raises(TalkingPoseError, match="frame rate"):
        VideoWriter(tmp_path / "x.mp4", 0, (64, 48))


# --- timing ---------------------------------------------------------------------------------------------------

def _timed_clip(path, times_ms, container_format=None):
    """A clip whose frame i is shown at times_ms[i] (milliseconds)."""
    with av.open(str(path), "w", format=container_format) as out:
        video = out.add_stream("libx264", rate=25, options={"bf": "0"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        for i, ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def test_spliced_mpegts_whose_timestamps_restart_is_counted_by_decoding(tmp_path):
    first = _timed_clip(tmp_path / "a.ts", [i * 40 for i in range(20)], "mpegts")
    second = _timed_clip(tmp_path / "b.ts", [i * 40 for i in range(20)], "mpegts")
    spliced = tmp_path / "spliced.ts"
    spliced.write_bytes(first.read_bytes() + second.read_bytes())  # a splice: the second half starts at 0 again
    with VideoReader(spliced) as reader:
        assert reader.frame_count == 40 == len(list(reader))
        assert "not evenly spaced" in reader.irregular_timing()


def test_variable_frame_rate_is_reported_and_a_constant_one_is_not(tmp_path, sources):
    times = [0, 40, 80, 200, 240, 400, 440, 480, 520, 700, 740, 780]
    with VideoReader(_timed_clip(tmp_path / "vfr.mp4", times)) as reader:
        message = reader.irregular_timing()
    assert "intervals from 40 to 180 ms" in message and "constant" in message and "audio" in message
    with VideoReader(sources["aac"]) as reader:
        assert reader.irregular_timing() is None
    with VideoReader(_timed_clip(tmp_path / "cfr.ts", [i * 40 for i in range(30)], "mpegts")) as reader:
        assert reader.irregular_timing() is None and reader.frame_count == 30


# --- segmented, resumable writing -------------------------------------------------------------------------------

_CRASHING_WRITER = """
import os, sys
import numpy as np
sys.path.insert(0, {root!r})
from talkingpose.segmented_writer import SegmentedVideoWriter
sys.path.insert(0, {tests!r})
from test_video_io import _frame
writer = SegmentedVideoWriter({out!r}, 25, (64, 48), segment_frames=10)
for i in range(25):
    writer.write(_frame(i))
print(writer.frames_encoded, writer.frames_written, flush=True)
os._exit(0)  # a crash: nothing is closed or flushed
"""


def test_segmented_writer_survives_a_crash_with_every_frame_and_resumes(tmp_path, sources):
    out = tmp_path / "result.mp4"
    script = _CRASHING_WRITER.format(
        root=str(PACK_ROOT), tests=str(PACK_ROOT / "tests"), out=str(out)
    )
    crashed = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True)
    assert crashed.returncode == 0, crashed.stderr
    assert crashed.stdout.split() == ["20", "25"]  # two encoded segments, five raw frames after them

    writer = SegmentedVideoWriter(out, 25, (64, 48), segment_frames=10, resume=True)
    assert writer.frames_written == 25 and writer.frames_encoded == 20  # nothing was lost
    assert sorted(p.name for p in writer.partial_dir.glob("segment_*")) == ["segment_00000.mp4", "segment_00001.mp4"]
    for i in range(writer.frames_written, 37):
        writer.write(_frame(i))
    assert writer.frames_written == 37 and writer.frames_encoded == 30
    assert writer.finalize(audio_from=sources["aac"]) == out
    assert not writer.partial_dir.exists()

    info = _probe(out)
    assert info["frames"] == 37 and len(info["decoded"]) == 37 and info["fps"] == 25
    assert [_closest_index(f, 37) for f in info["decoded"]] == list(range(37))  # in order across the joins
    [(codec, seconds)] = info["audio"]
    assert codec == "aac" and 1.47 <= seconds <= 1.52  # 37 frames = 1.48 s


def test_segmented_output_does_not_depend_on_where_writing_stopped(tmp_path):
    whole = SegmentedVideoWriter(tmp_path / "whole.mp4", 25, (64, 48), segment_frames=4)
    for i in range(11):
        whole.write(_frame(i))
    whole.finalize()
    for stop in (1, 4, 5, 9):
        out = tmp_path / f"cut{stop}.mp4"
        first = SegmentedVideoWriter(out, 25, (64, 48), segment_frames=4)
        for i in range(stop):
            first.write(_frame(i))
        resumed = SegmentedVideoWriter(out, 25, (64, 48), segment_frames=4, resume=True)
        for i in range(resumed.frames_written, 11):
            resumed.write(_frame(i))
        resumed.finalize()
        assert out.read_bytes() == (tmp_path / "whole.mp4").read_bytes(), stop


def test_segmented_writer_drops_a_damaged_segment(tmp_path):
    out = tmp_path / "damaged.mp4"
    writer = SegmentedVideoWriter(out, 25, (64, 48), segment_frames=10)
    for i in range(31):
        writer.write(_frame(i))
    second = writer.partial_dir / "segment_00001.mp4"
    second.write_bytes(second.read_bytes()[:200])  # e.g. a disk that lost the end of a file

    resumed = SegmentedVideoWriter(out, 25, (64, 48), segment_frames=10, resume=True)
    # everything from the damaged segment on goes: frames must stay contiguous
    assert resumed.frames_written == 10
    assert sorted(p.name for p in resumed.partial_dir.iterdir()) == ["segment_00000.mp4", "talkingpose-partial.json"]
    for i in range(10, 15):
        resumed.write(_frame(i))
    resumed.finalize()
    info = _probe(out)
    assert info["frames"] == 15 and [_closest_index(f, 15) for f in info["decoded"]] == list(range(15))


def test_segmented_writer_truncates_only_raw_frames(tmp_path):
    writer = SegmentedVideoWriter(tmp_path / "t.mp4", 25, (64, 48), segment_frames=4)
    for i in range(7):
        writer.write(_frame(i))
    writer.truncate(5)
    assert SegmentedVideoWriter(tmp_path / "t.mp4", 25, (64, 48), segment_frames=4, resume=True).frames_written == 5
    with pytest.raises(TalkingPoseError, match="earlier ones are encoded"):
        writer.truncate(3)


def test_segmented_writer_resume_checks_settings_and_fresh_start_discards(tmp_path):
    out = tmp_path / "settings.mp4"
    writer = SegmentedVideoWriter(out, 25, (64, 48), segment_frames=4)
    for i in range(8):
        writer.write(_frame(i))
    with pytest.raises(TalkingPoseError, match="other settings"):
        SegmentedVideoWriter(out, 30, (64, 48), segment_frames=4, resume=True)
    assert SegmentedVideoWriter(out, 25, (64, 48), segment_frames=4, resume=True).frames_written == 8
    fresh = SegmentedVideoWriter(out, 25, (64, 48), segment_frames=4)
    assert fresh.frames_written == 0 and not list(fresh.partial_dir.glob("segment_*"))
    with pytest.raises(TalkingPoseError, match="nothing to finalize"):
        fresh.finalize()
    nothing_yet = SegmentedVideoWriter(tmp_path / "new.mp4", 25, (64, 48), resume=True)
    assert nothing_yet.frames_written == 0


def test_segmented_writer_reencodes_when_segments_cannot_be_joined(tmp_path, sources, monkeypatch):
    out = tmp_path / "fallback.mp4"
    writer = SegmentedVideoWriter(out, 25, (64, 48), segment_frames=6)
    for i in range(14):
        writer.write(_frame(i))
    monkeypatch.setattr(SegmentedVideoWriter, "_remux", lambda self, files, target, audio_from: False)
    writer.finalize(audio_from=sources["aac"])
    info = _probe(out)
    assert info["frames"] == 14 and [_closest_index(f, 14) for f in info["decoded"]] == list(range(14))
    assert [codec for codec, _ in info["audio"]] == ["aac"]


def test_default_codec_is_available():
    codec = video_io.default_video_codec()
    assert codec in ("libx264", "mpeg4")
    av.codec.Codec(codec, "w")  # raises if this build cannot encode with it
