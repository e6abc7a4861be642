"""Opt-in downloads: files land flat in the target folder with their SHA-256 recorded; damage is detected."""
import shutil

import pytest

from talkingpose import downloads
from talkingpose.errors import TalkingPoseError


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """huggingface_hub's download, served from a local folder (no network here)."""
    import huggingface_hub

    hub = tmp_path / "hub"
    (hub / "weights").mkdir(parents=True)
    for name in ("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth"):
        (hub / "weights" / name).write_bytes(name.encode() * 100)
    calls = []

    def hf_hub_download(repo_id, filename, local_dir):
        calls.append((repo_id, filename))
        if not (hub / filename).is_file():
            raise FileNotFoundError(filename)
        target = local_dir / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(hub / filename, target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return calls


def test_fetch_places_files_flat_and_records_checksums(tmp_path, fake_hub):
    dest = tmp_path / "models" / "talkingpose" / "TalkingPose"
    paths = downloads.fetch(downloads.TALKINGPOSE_REPO, downloads.TALKINGPOSE_FILES, dest)
    assert [p.name for p in paths] == ["denoising_unet.pth", "reference_unet.pth", "pose_guider.pth"]
    assert all(repo == "arjavanmardi/TalkingPose" for repo, _ in fake_hub)
    assert downloads.verify(dest) == []
    assert not (dest / ".download").exists()
    # Already present files are not fetched again.
    fake_hub.clear()
    downloads.fetch(downloads.TALKINGPOSE_REPO, downloads.TALKINGPOSE_FILES, dest)
    assert fake_hub == []
    (dest / "pose_guider.pth").write_bytes(b"damaged")
    assert downloads.verify(dest) == ["pose_guider.pth"]


def test_failed_download_says_what_and_where(tmp_path, fake_hub):
    with pytest.raises(TalkingPoseError, match=r"Could not download weights/missing\.pth from arjavanmardi/TalkingPose.*by hand into"):
        downloads.fetch(downloads.TALKINGPOSE_REPO, ("weights/missing.pth",), tmp_path / "d")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"a.pth": 5}', '{"../../x": "00"}', "\udcff"])
def test_a_damaged_checksum_record_is_refused_with_a_sentence_everywhere(tmp_path, fake_hub, content):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "checksums.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    for call in (lambda: downloads.fetch(downloads.TALKINGPOSE_REPO, downloads.TALKINGPOSE_FILES, dest),
                 lambda: downloads.verify(dest)):
        with pytest.raises(TalkingPoseError, match=r"checksums.json is damaged .* Delete it and run the download again"):
            call()
    assert fake_hub == []


def test_download_command_with_a_damaged_record_prints_the_sentence(tmp_path):
    import subprocess
    import sys

    from helpers import PACK_ROOT

    (tmp_path / "dwpose").mkdir()
    (tmp_path / "dwpose" / "checksums.json").write_text("{oops")
    result = subprocess.run([sys.executable, "cli.py", "download", "--what", "dwpose", "--models", str(tmp_path)],
                            cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "checksums.json is damaged" in result.stderr
    assert "Traceback" not in result.stderr


def test_each_download_retry_is_printed_once(tmp_path):
    """huggingface_hub logs a retry with its own handler; the command's logging must not print it again."""
    import subprocess
    import sys

    from helpers import PACK_ROOT

    code = ("from talkingpose.cli import configure_logging; configure_logging()\n"
            "from huggingface_hub.utils import logging as hf_logging\n"
            "hf_logging.get_logger('huggingface_hub.utils._http').warning('Retrying in 1s [Retry 1/5].')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=PACK_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Retrying in 1s [Retry 1/5].") == 1, result.stderr
