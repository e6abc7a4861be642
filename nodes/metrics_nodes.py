"""Video Metrics: TJE, PSNR and SSIM between two IMAGE batches, to tune beta on one's own footage."""
from __future__ import annotations

CATEGORY = "TalkingPose"


class TalkingPoseVideoMetrics:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FLOAT", "FLOAT", "FLOAT", "STRING")
    RETURN_NAMES = ("tje", "psnr", "ssim", "report")
    FUNCTION = "measure"
    OUTPUT_NODE = True
    DESCRIPTION = ("Compares a generated frame batch with the real one, paired until the shorter ends: TJE "
                   "(temporal jitter, lower is steadier; as the paper's tools/tje_error.py), PSNR on 8-bit frames "
                   "and SSIM. Generated frames of another size are area-resized to the real size.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "real": ("IMAGE", {"tooltip": "The driving video's frames (self-reenactment) or any reference."}),
                "generated": ("IMAGE",),
                "delta": ("INT", {"default": 2, "min": 1, "max": 100, "tooltip": "TJE frame distance \u03b4 (the paper uses 2)."}),
            }
        }

    def measure(self, real, generated, delta):
        from talkingpose.metrics import compare_frames

        # IMAGE values are 8-bit levels / 255 (decoded video, VAE Decode output quantised for saving); rounding
        # recovers the levels exactly, where truncation could drop one. One frame at a time: no copy of the batch.
        as_frames = lambda batch: ((frame * 255).round().clamp(0, 255).byte().cpu().numpy() for frame in batch)  # noqa: E731
        result = compare_frames(as_frames(real), as_frames(generated), delta=delta,
                                metrics=("tje", "psnr_8bit", "ssim"), labels=("The real batch", "The generated batch"))
        tje = float("nan") if result.tje is None else result.tje
        report = (f"{result.n_frames} frame pairs · TJE(\u03b4={delta}) {tje:.4f} · PSNR {result.psnr_8bit:.2f} dB · "
                  f"SSIM {result.ssim:.4f}")
        return {"ui": {"text": [report]}, "result": (tje, result.psnr_8bit, result.ssim, report)}


NODE_CLASS_MAPPINGS = {"TalkingPoseVideoMetrics": TalkingPoseVideoMetrics}
NODE_DISPLAY_NAME_MAPPINGS = {"TalkingPoseVideoMetrics": "TalkingPose Video Metrics (TJE / PSNR / SSIM)"}
