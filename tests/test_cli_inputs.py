"""Bad input on the command line (issue 13 §5): every case ends with a sentence on stderr and a non-zero exit
code, never a traceback, and nothing already written is touched. The commands run in this process through
`talkingpose.cli.main`, exactly what `cli.py`, `python -m talkingpose` and the console script call."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from talkingpose import file_names
from talkingpose.cli import main

from helpers import SHARED

DRIVING = SHARED / "samples" / "driving" / "vid1.mp4"
POSES = SHARED / "samples" / "dwpose" / "vid1.mp4"


def run_cli(capsys, *argv) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with a text file posing as an image and a video, a folder, a tiny RGB video, and an earlier
    render that a refused command must not touch."""
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(tmp_path / "models"))
    (tmp_path / "notes.png").write_text("shopping list: not a picture")
    (tmp_path / "notes.mp4").write_text("not a video either")
    (tmp_path / "folder").mkdir()
    from talkingpose.video_io import VideoWriter

    with VideoWriter(tmp_path / "tiny.mp4", 23, (32, 32)) as writer:
        for i in range(4):
            writer.write(np.full((32, 32, 3), 40 * i, np.uint8))
    (tmp_path / "earlier.mp4").write_bytes(b"an earlier render")
    return tmp_path


def _untouched(work: Path) -> None:
    assert (work / "earlier.mp4").read_bytes() == b"an earlier render"
    assert not (work / "out.mp4").exists() and not (work / "out.mp4.partial").exists()


def _animate(work: Path, *extra):
    """The command with `extra`; random weights, so that only the input under test can stop it (every case stops
    before a network is built)."""
    driving = [] if "--driving" in extra else ["--driving", work / "tiny.mp4"]
    weights = [] if "--models" in extra else ["--random-weights"]
    return ("animate", *driving, "--out", work / "out.mp4", *weights, *extra)


# ------------------------------------------------------------------------------------------------ animate
@pytest.mark.parametrize("extra, sentence", [
    (("--source", "{w}/notes.png"), r"notes\.png is not an image that can be read; use a PNG, JPEG"),
    (("--source", "{w}/folder"), r"source image .*folder is a folder; give a file"),
    (("--source", "{w}/absent.png"), r"absent\.png does not exist"),
    (("--frames", "-1"), r"--frames must be at least 1 \(got -1\)"),
    (("--frames", "0"), r"--frames must be at least 1 \(got 0\)"),
    (("--size", "100x64"), r"width 100 is not a multiple of 8"),
    (("--size", "64x0"), r"height 0 is not a multiple of 8 of at least 64"),
    (("--size", "big"), r"size 'big' is not WIDTHxHEIGHT"),
    (("--steps", "0"), r"steps is 0; it must be a whole number of at least 1"),
    (("--cfg", "-1"), r"cfg is -1.0; use a guidance scale of 0 or more"),
    (("--cfg", "inf"), r"cfg is inf; use a guidance scale of 0 or more"),
    (("--cfg", "nan"), r"cfg is nan; use a guidance scale of 0 or more"),
    (("--beta", "1.5"), r"beta \(closed-loop gain\) is 1.5; it must be between 0 and 1"),
    (("--beta", "-0.1"), r"beta \(closed-loop gain\) is -0.1; it must be between 0 and 1"),
    (("--seed", "-1"), r"seed -1 is out of range"),
    (("--poses", "{w}/notes.mp4"), r"Could not read .*notes\.mp4 as a video"),
    (("--poses", "{w}/folder"), r"pose video .*folder is a folder"),
    (("--driving", "{w}/notes.mp4"), r"Could not read .*notes\.mp4 as a video"),
    (("--models", "{w}/no-such-folder"), r"(?s)Missing weights:.*no-such-folder/talkingpose"),
    (("--models", "{w}/notes.png"), r"models folder .*notes\.png \(--models\) is a file"),
    (("--device", "gpu0"), r"--device 'gpu0' is not a device PyTorch knows; use auto, cpu, cuda"),
    (("--fit", "zoom"), r"argument --fit: invalid choice: 'zoom'"),
])
def test_animate_bad_input_is_a_sentence(work, capsys, extra, sentence):
    code, err = run_cli(capsys, *_animate(work, *(str(e).format(w=work) for e in extra)))
    assert code != 0
    assert "Traceback" not in err
    assert re.search(sentence, err), err
    _untouched(work)


def test_animate_on_a_machine_without_the_asked_device(work, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = run_cli(capsys, *_animate(work, "--device", "cuda:0"))
    assert code == 2 and "this PyTorch sees no CUDA" in err and "--device cpu" in err
    _untouched(work)


def test_animate_without_any_driving_input(work, capsys):
    code, err = run_cli(capsys, "animate", "--out", work / "out.mp4", "--random-weights")
    assert code == 2 and "Give a driving video (--driving), a pose video (--poses)" in err
    code, err = run_cli(capsys, "animate", "--poses", work / "tiny.mp4", "--out", work / "out.mp4", "--random-weights")
    assert code == 2 and "give the source image with --source" in err
    _untouched(work)


def test_animate_damaged_or_oversized_source_is_a_sentence(work, capsys, monkeypatch):
    from PIL import Image

    Image.new("RGB", (64, 64), (10, 20, 30)).save(work / "photo.png")
    data = (work / "photo.png").read_bytes()
    (work / "cut.png").write_bytes(data[: len(data) // 2])
    code, err = run_cli(capsys, *_animate(work, "--source", work / "cut.png"))
    assert code == 2 and "could not be decoded" in err and "damaged or cut short" in err
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64×64 is then over twice the limit: a "bomb"
    code, err = run_cli(capsys, *_animate(work, "--source", work / "photo.png"))
    assert code == 2 and "too many pixels to decode safely" in err
    _untouched(work)


def test_frames_message_is_the_same_for_the_engine(tmp_path):
    from talkingpose import animate
    from talkingpose.errors import TalkingPoseError

    if not DRIVING.is_file():
        pytest.skip("shared sample clip not found")
    with pytest.raises(TalkingPoseError, match=r"--frames must be at least 1 \(got -3\)"):
        animate.run(animate.AnimateJob(out=tmp_path / "o.mp4", driving=DRIVING, poses=POSES, frames=-3))


# ------------------------------------------------------------------------------------------------ source alpha
def _rgba_file(path: Path) -> np.ndarray:
    from PIL import Image

    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (40, 56, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0  # a transparent band
    rgba[10:20, :, 3] = 128  # and a half-transparent one
    Image.fromarray(rgba, "RGBA").save(path)
    return rgba


def test_alpha_source_is_flattened_onto_white_the_same_way_on_both_paths(tmp_path):
    """The command line reads the file; ComfyUI gives the node the same pixels as a float RGBA IMAGE (e.g. Load
    Image's IMAGE and MASK joined by Join Image with Alpha). Both end as the same RGB picture."""
    import torch

    from talkingpose import animate, images

    rgba = _rgba_file(tmp_path / "cutout.png")
    command_line = np.asarray(images.to_pil_rgb(images.flatten_onto_white(animate.read_source(tmp_path / "cutout.png"))))
    comfy_image = torch.from_numpy(rgba.astype(np.float32) / 255.0)
    node = np.asarray(images.to_pil_rgb(images.flatten_onto_white(comfy_image)))
    np.testing.assert_array_equal(command_line, node)
    assert (command_line[:10] == 255).all()  # transparent: white
    expected = np.round(rgba[10:20, :, :3] * (128 / 255) + 255 * (1 - 128 / 255))
    assert np.abs(command_line[10:20].astype(int) - expected).max() <= 1


def test_alpha_source_encodes_like_a_white_picture(tmp_path, tiny_pipeline):
    from PIL import Image

    from talkingpose import animate

    transparent = np.zeros((48, 40, 4), np.uint8)
    Image.fromarray(transparent, "RGBA").save(tmp_path / "clear.png")
    Image.new("RGB", (40, 48), (255, 255, 255)).save(tmp_path / "white.png")
    clear = tiny_pipeline.encode_appearance(animate.read_source(tmp_path / "clear.png"), 64, 64)
    white = tiny_pipeline.encode_appearance(animate.read_source(tmp_path / "white.png"), 64, 64)
    assert clear.fingerprint == white.fingerprint


def test_sixteen_bit_grey_source_is_not_clipped_to_white(tmp_path):
    from PIL import Image

    from talkingpose import animate, images

    grey = np.full((16, 16), 32768, np.uint16)  # mid grey in 16 bits
    Image.fromarray(grey).save(tmp_path / "deep.png")
    picture = images.to_pil_rgb(images.flatten_onto_white(animate.read_source(tmp_path / "deep.png")))
    assert np.asarray(picture).max() == 128 and np.asarray(picture).min() == 128


# ------------------------------------------------------------------------------------------------ metrics
@pytest.mark.parametrize("argv, sentence", [
    (("--real", "{w}/absent.mp4", "--generated", "{w}/tiny.mp4"), r"Video file not found: .*absent\.mp4"),
    (("--real", "{w}/notes.mp4", "--generated", "{w}/tiny.mp4"), r"Could not read .*notes\.mp4 as a video"),
    (("--real", "{w}/tiny.mp4", "--generated", "{w}/tiny.mp4", "--delta", "0"), r"delta must be a whole number of at least 1"),
    (("--real", "{w}/tiny.mp4", "--generated", "{w}/tiny.mp4", "--metrics", "fvd"), r"Unknown or no metrics \['fvd'\]"),
    (("--real", "{w}/folder", "--generated", "{w}/tiny.mp4"), r"must both be videos or both be folders"),
    (("--real", "{w}/folder", "--generated", "{w}/folder"), r"No videos matching '\*\.mp4'"),
    (("--real", "{w}/tiny.mp4", "--generated", "{w}/tiny.mp4", "--json", "{w}/folder"), r"--json .*folder is a folder"),
    (("--real", "{w}/tiny.mp4", "--generated", "{w}/tiny.mp4", "--json", "{w}/notes.png/m.json"),
     r"cannot be made: .*notes\.png is a file, not a folder"),
])
def test_metrics_bad_input_is_a_sentence(work, capsys, argv, sentence):
    code, err = run_cli(capsys, "metrics", *(str(a).format(w=work) for a in argv))
    assert code != 0 and "Traceback" not in err
    assert re.search(sentence, err), err
    assert (work / "notes.png").read_text() == "shopping list: not a picture"


def test_metrics_json_into_a_new_folder_is_written(work, capsys):
    code, _ = run_cli(capsys, "metrics", "--real", work / "tiny.mp4", "--generated", work / "tiny.mp4",
                      "--metrics", "psnr_8bit", "--json", work / "reports" / "m.json")
    assert code == 0
    assert json.loads((work / "reports" / "m.json").read_text())["n_frames"] == 4


# ------------------------------------------------------------------------------------------------ convert
@pytest.mark.parametrize("argv, sentence", [
    (("{w}/absent", "{w}/x.safetensors"), r"TalkingPose model .*absent does not exist"),
    (("{w}/notes.png", "{w}/x.safetensors"), r"is a single file but not a combined \.safetensors"),
    (("{w}/folder", "{w}/x.safetensors"), r"folder .*folder is missing denoising_unet\.pth"),
    (("{w}/folder", "{w}/x.pth"), r"must end in \.safetensors"),
    (("{w}/folder", "{w}/folder/inner.safetensors/"), r"is a folder; give a file name"),
    (("{w}/folder", "{w}/notes.png/x.safetensors"), r"notes\.png is a file, not a folder"),
])
def test_convert_bad_input_is_a_sentence(work, capsys, argv, sentence):
    (work / "folder" / "inner.safetensors").mkdir()
    code, err = run_cli(capsys, "convert", *(str(a).format(w=work) for a in argv))
    assert code != 0 and "Traceback" not in err
    assert re.search(sentence, err), err


def test_convert_never_replaces_an_existing_file_unless_asked(work, capsys, tiny_weights):
    out = work / "model.safetensors"
    out.write_bytes(b"an earlier conversion")
    code, err = run_cli(capsys, "convert", tiny_weights["model"], out)
    assert code == 2 and "already exists; choose another name, or add --overwrite" in err
    assert out.read_bytes() == b"an earlier conversion"
    code, _ = run_cli(capsys, "convert", tiny_weights["model"], out, "--overwrite")
    assert code == 0 and out.read_bytes() != b"an earlier conversion"


# ------------------------------------------------------------------------------------------------ download
@pytest.fixture
def no_network(monkeypatch):
    import huggingface_hub

    def refuse(**kwargs):
        raise AssertionError("a download started although the destination was refused")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.mark.parametrize("models, sentence", [
    ("{w}/notes.png", r"dwpose folder .*notes\.png/dwpose cannot be made: .*notes\.png is a file, not a folder"),
    ("/proc/talkingpose-models", r"dwpose folder /proc/talkingpose-models/dwpose cannot be written"),
])
def test_download_to_a_place_that_cannot_be_written_is_a_sentence(work, capsys, no_network, models, sentence):
    code, err = run_cli(capsys, "download", "--what", "dwpose", "--models", models.format(w=work))
    assert code != 0 and "Traceback" not in err
    assert re.search(sentence, err), err


def test_download_checks_every_destination_before_the_first_download(work, capsys, no_network):
    (work / "models").mkdir()
    (work / "models" / "vae").write_text("a file where a folder should be")
    code, err = run_cli(capsys, "download", "--models", work / "models", "--what", "talkingpose", "vae")
    assert code == 2 and "The vae folder" in err and "is a file, not a folder" in err
    assert not (work / "models" / "talkingpose").exists()


# ------------------------------------------------------------------------------------------------ Windows names
@pytest.mark.parametrize("argv, sentence", [
    (("animate", "--driving", "{w}/tiny.mp4", "--random-weights", "--out", "{w}/CON.mp4"),
     r"argument --out: The path .*CON\.mp4 cannot be used: 'CON\.mp4' is a name Windows keeps for a device"),
    (("animate", "--driving", "{w}/tiny.mp4", "--random-weights", "--out", "{w}/take 2./out.mp4"),
     r"'take 2\.' ends in a dot or a space, which Windows drops from file names; remove it"),
    (("pose", "smooth", "--driving", "{w}/t.json", "--out", "{w}/a|b.json"), r"'a\|b\.json' holds '\|'"),
    (("finetune", "--video", "{w}/tiny.mp4", "--out", "{w}/lpt1.safetensors"), r"'lpt1\.safetensors' is a name"),
    (("convert", "{w}", "{w}/com9.x.safetensors"), r"'com9\.x\.safetensors' is a name"),
    (("metrics", "--real", "{w}/tiny.mp4", "--generated", "{w}/tiny.mp4", "--json", "{w}/aux/m.json"),
     r"'aux' is a name Windows keeps"),
    (("batch", "{w}/jobs.csv", "--out-dir", "{w}/out?"), r"argument --out-dir: The folder .* holds '\?'"),
    (("evaluate", "--dataset", "{w}", "--out-dir", "{w}/prn"), r"argument --out-dir: The folder .*'prn' is a name"),
])
def test_on_windows_output_names_it_cannot_hold_are_refused_before_any_work(work, capsys, monkeypatch, argv, sentence):
    monkeypatch.setattr(file_names, "on_windows", lambda: True)  # as sys.platform == "win32"
    code, err = run_cli(capsys, *(a.format(w=work) for a in argv))
    assert code == 2 and re.search(sentence, err), err
    _untouched(work)


def test_on_windows_an_output_whose_kept_frames_would_pass_max_path_is_refused_before_any_work(work, capsys,
                                                                                              monkeypatch):
    """The deepest file a render writes is a state file's temporary inside `<out>.partial/`, 50 characters below
    the output's own path and its temporary: that is what must fit in Windows' 259."""
    monkeypatch.setattr(file_names, "on_windows", lambda: True)  # as sys.platform == "win32"
    folder = work / ("f" * (259 - len(str(work)) - 1 - 60))  # room for a 60-character name, less than the frames need
    out = folder / "clip.mp4"
    code, err = run_cli(capsys, "animate", "--driving", work / "tiny.mp4", "--random-weights", "--out", out)
    assert code == 2 and not folder.exists(), err
    length = len(str(out)) + len(".partial/state-0000000.safetensors") + len("..0000000000.xxxxxxxx.tmp")
    assert (f"error: The output {out} would need paths of {length} characters (the files written for it); Windows "
            f"allows 259. Shorten --out (its folder or its name) by at least {length - 259} characters.") in err
    monkeypatch.setattr(file_names, "on_windows", lambda: False)  # elsewhere no such limit
    assert run_cli(capsys, "animate", "--driving", work / "tiny.mp4", "--random-weights", "--size", "64x64",
                   "--steps", "1", "--frames", "1", "--out", out)[0] == 0
