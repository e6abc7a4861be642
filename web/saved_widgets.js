// Widget values of workflows saved by an older version of the pack, brought to the node's current widgets.
// Pure functions (no ComfyUI imports) so that Node's test runner covers them: tests/web/saved_widgets.test.mjs.

export const TRAIN_TYPE = "TalkingPoseTrainLoRA";
// The values the frontend's "control after generate" widget takes.
export const CONTROL_VALUES = ["fixed", "increment", "decrement", "randomize"];

/**
 * Train TalkingPose LoRA's `seed` had a "control after generate" widget (the frontend adds one to any INT named
 * seed) until the input declared control_after_generate False. A workflow saved then holds one value more:
 * [..., seed, "fixed", resume]. Returns the values without that control value when `values` has exactly that
 * layout for these widget names, else `values` itself (already the current layout, or something else: left as is).
 */
export function dropSeedControlValue(values, widgetNames, seedName = "seed") {
    const seed = widgetNames.indexOf(seedName);
    if (!Array.isArray(values) || seed < 0 || values.length !== widgetNames.length + 1) return values;
    if (!CONTROL_VALUES.includes(values[seed + 1])) return values;
    return [...values.slice(0, seed + 1), ...values.slice(seed + 2)];
}
