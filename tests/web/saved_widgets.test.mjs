// Tests of web/saved_widgets.js with Node's built-in runner: node --test tests/web/*.test.mjs
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { dropSeedControlValue } from "../../web/saved_widgets.js";

// Train TalkingPose LoRA's widgets, in order, now that its seed has no control widget.
const TRAIN_WIDGETS = ["steps", "rank", "learning_rate", "output_name", "width", "height", "batch", "seed", "resume"];
const CURRENT = [1000, 16, 0.0001, "person", 512, 512, 4, 0, true];

describe("dropSeedControlValue (Train TalkingPose LoRA saved with a seed control)", () => {
    it("drops the control value that followed the seed, whatever the control was", () => {
        for (const control of ["fixed", "randomize", "increment", "decrement"]) {
            const saved = [1000, 16, 0.0001, "person", 512, 512, 4, 0, control, true];
            assert.deepEqual(dropSeedControlValue(saved, TRAIN_WIDGETS), CURRENT);
        }
    });

    it("leaves values already in the current layout alone", () => {
        assert.equal(dropSeedControlValue(CURRENT, TRAIN_WIDGETS), CURRENT);
    });

    it("leaves values alone that have one more value but no control after the seed", () => {
        const other = [1000, 16, 0.0001, "person", 512, 512, 4, 0, true, "extra"];
        assert.equal(dropSeedControlValue(other, TRAIN_WIDGETS), other);
    });

    it("leaves nodes without a seed widget and missing values alone", () => {
        const noSeed = [1, "fixed"];
        assert.equal(dropSeedControlValue(noSeed, ["steps"]), noSeed);
        assert.equal(dropSeedControlValue(undefined, TRAIN_WIDGETS), undefined);
    });
});
