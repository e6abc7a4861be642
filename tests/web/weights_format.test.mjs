// Tests of web/weights_format.js with Node's built-in runner: node --test tests/web/*.test.mjs
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { missingWeights } from "../../web/weights_format.js";

const status = (models, encoder) => ({
    talkingpose: { installed: models, message: "No TalkingPose model is installed. ... download --what talkingpose" },
    image_encoder: { file: "sd-image-variations-image-encoder.safetensors", installed: encoder,
                     message: "... download --what image_encoder" },
});
const template = [
    { type: "TalkingPoseModelLoader", values: { model: "TalkingPose/", precision: "auto" } },
    { type: "CLIPVisionLoader", values: { clip_name: "sd-image-variations-image-encoder.safetensors" } },
    { type: "VAELoader", values: { vae_name: "vae-ft-mse-840000-ema-pruned.safetensors" } },
];

describe("missingWeights", () => {
    it("names the TalkingPose loader and the converted image encoder when neither is installed", () => {
        const found = missingWeights(status([], false), template);
        assert.deepEqual(found.map((m) => m.index), [0, 1]);
        assert.match(found[0].message, /download --what talkingpose$/);
        assert.match(found[1].message, /download --what image_encoder$/);
    });

    it("names nothing when the chosen model and the encoder are installed", () => {
        assert.deepEqual(missingWeights(status(["TalkingPose/", "talkingpose_fp16.safetensors"], true), template), []);
    });

    it("names a loader whose chosen model is not among the installed ones", () => {
        const found = missingWeights(status(["talkingpose_fp16.safetensors"], true), template);
        assert.deepEqual(found.map((m) => m.index), [0]);
    });

    it("leaves other CLIP Vision files and other loaders to the frontend", () => {
        const other = [{ type: "CLIPVisionLoader", values: { clip_name: "clip_vision_h.safetensors" } }, template[2]];
        assert.deepEqual(missingWeights(status([], false), other), []);
    });

    it("says nothing without a status (an older server)", () => {
        assert.deepEqual(missingWeights(null, template), []);
    });
});
