// Pure logic of the missing-weights warning (web/weights.js): which loader nodes name weights the server does
// not have. No DOM and no ComfyUI imports, so `node --test tests/web/` can run it.

export const MODEL_LOADER_TYPE = "TalkingPoseModelLoader";
export const CLIP_LOADER_TYPE = "CLIPVisionLoader";

/**
 * The nodes (by index in `nodes`, each {type, values: {widget name: value}}) whose weights are missing, each with
 * the server's sentence for it. `status` is GET /talkingpose/weights: {talkingpose: {installed, message},
 * image_encoder: {file, installed, message}}. A CLIP Vision Loader counts only when it names the converted image
 * encoder (other files are the frontend's missing-models panel's business).
 */
export function missingWeights(status, nodes) {
    const found = [];
    nodes.forEach(({ type, values }, index) => {
        if (type === MODEL_LOADER_TYPE && status?.talkingpose) {
            if (!(status.talkingpose.installed ?? []).includes(values?.model)) {
                found.push({ index, message: status.talkingpose.message });
            }
        } else if (type === CLIP_LOADER_TYPE && status?.image_encoder) {
            if (values?.clip_name === status.image_encoder.file && !status.image_encoder.installed) {
                found.push({ index, message: status.image_encoder.message });
            }
        }
    });
    return found;
}
