"""The templates' sample inputs ship with the pack, are the files the templates load, and are copied into
ComfyUI's input folder without ever replacing a file that is there (nodes/sample_inputs.py)."""
import json

import pytest

from helpers import PACK_ROOT
from nodes.sample_inputs import SAMPLE_DIR, copy_sample_inputs

LOADERS = {"LoadImage": 0, "LoadVideo": 0, "VHS_LoadVideo": "video"}  # where each loader keeps its file name


def template_inputs():
    names = set()
    for path in sorted((PACK_ROOT / "example_workflows").glob("*.json")):
        for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
            if node["type"] in LOADERS:
                names.add(node["widgets_values"][LOADERS[node["type"]]])
    return names


def test_every_file_a_template_loads_ships_and_nothing_else():
    shipped = {p.name for p in SAMPLE_DIR.iterdir()}
    assert template_inputs() == shipped == {"talkingpose_source.png", "talkingpose_driving.mp4", "person.mp4"}


def test_the_samples_stay_small():
    total = sum(p.stat().st_size for p in SAMPLE_DIR.iterdir())
    assert total < 1024 * 1024, f"{total / 1024:.0f} KiB"


@pytest.mark.parametrize("name", ["talkingpose_driving.mp4", "person.mp4"])
def test_the_clips_are_real_videos(name):
    import av

    with av.open(str(SAMPLE_DIR / name)) as clip:
        stream = clip.streams.video[0]
        count = sum(1 for _ in clip.decode(stream))
        assert (stream.width, stream.height) == (512, 512) and count >= 60


def test_copied_when_absent_and_never_over_the_artists_file(tmp_path):
    own = tmp_path / "person.mp4"
    own.write_bytes(b"the artist's own clip")
    assert copy_sample_inputs(tmp_path) == ["talkingpose_driving.mp4", "talkingpose_source.png"]
    assert own.read_bytes() == b"the artist's own clip"
    for name in ("talkingpose_driving.mp4", "talkingpose_source.png"):
        assert (tmp_path / name).read_bytes() == (SAMPLE_DIR / name).read_bytes()
    assert copy_sample_inputs(tmp_path) == []  # the next start copies nothing
    (tmp_path / "talkingpose_source.png").unlink()
    assert copy_sample_inputs(tmp_path) == ["talkingpose_source.png"]  # a deleted sample comes back


def test_a_folder_that_cannot_be_written_is_a_warning_not_a_crash(tmp_path, caplog):
    missing = tmp_path / "no such folder"
    assert copy_sample_inputs(missing) == []
    assert "Could not copy the template sample" in caplog.text
