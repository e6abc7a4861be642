"""What GET /talkingpose/weights tells the browser (nodes/weights_status.py; web/weights.js shows it when a
workflow opens): which TalkingPose models are installed, whether the converted image encoder is, and the
sentence with the command that fetches each."""
from nodes.weights_status import weights_status


def test_nothing_installed_names_both_with_their_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(tmp_path / "models"))
    status = weights_status()
    assert status["talkingpose"]["installed"] == []
    message = status["talkingpose"]["message"]
    assert message.startswith("No TalkingPose model is installed.")
    assert f"download --what talkingpose --models {tmp_path / 'models'}" in message
    encoder = status["image_encoder"]
    assert encoder["file"] == "sd-image-variations-image-encoder.safetensors" and encoder["installed"] is False
    assert str(tmp_path / "models" / "clip_vision") in encoder["message"]
    assert encoder["message"].endswith(f"download --what image_encoder --models {tmp_path / 'models'}")
    for text in (message, encoder["message"]):
        text.encode("cp1252")


def test_installed_weights_are_listed(tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv("TALKINGPOSE_MODELS", str(models))
    folder = models / "talkingpose" / "TalkingPose"
    folder.mkdir(parents=True)
    for part in ("denoising_unet", "reference_unet", "pose_guider"):
        (folder / f"{part}.pth").write_bytes(b"")
    (models / "clip_vision").mkdir()
    (models / "clip_vision" / "sd-image-variations-image-encoder.safetensors").write_bytes(b"")
    status = weights_status()
    assert status["talkingpose"]["installed"] == ["TalkingPose/"]
    assert status["image_encoder"]["installed"] is True
