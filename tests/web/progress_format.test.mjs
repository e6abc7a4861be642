// Tests of web/progress_format.js with Node's built-in runner: node --test tests/web/*.test.mjs
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
    PROGRESS_EVENT,
    Phase,
    ProgressBoard,
    SAMPLER_TYPE,
    formatClock,
    formatPerFrame,
    formatSeconds,
    fractionDone,
    localNodeId,
    matchesNodeId,
    placeStatus,
    resolveDisplayNode,
    splitExecutionId,
    statusText,
} from "../../web/progress_format.js";

const progress = (node, frame, frames, sPerFrame = 2, etaS = sPerFrame * (frames - frame)) => ({
    node, frame, frames, s_per_frame: sPerFrame, eta_s: etaS,
});

describe("formatClock (ETA)", () => {
    it("shows zero and short times as m:ss", () => {
        assert.equal(formatClock(0), "0:00");
        assert.equal(formatClock(1), "0:01");
        assert.equal(formatClock(59), "0:59");
        assert.equal(formatClock(60), "1:00");
        assert.equal(formatClock(61.2), "1:01");
        assert.equal(formatClock(599), "9:59");
        assert.equal(formatClock(3599), "59:59");
    });

    it("switches to h:mm:ss from one hour on, without wrapping into days", () => {
        assert.equal(formatClock(3600), "1:00:00");
        assert.equal(formatClock(3661), "1:01:01");
        assert.equal(formatClock(3600 * 10 + 5), "10:00:05");
        assert.equal(formatClock(3600 * 30), "30:00:00");
    });

    it("rounds to the nearest second, carrying into minutes and hours", () => {
        assert.equal(formatClock(0.4), "0:00");
        assert.equal(formatClock(59.4), "0:59");
        assert.equal(formatClock(59.6), "1:00");
        assert.equal(formatClock(3599.5), "1:00:00");
    });

    it("gives ? for values that are not a duration", () => {
        for (const bad of [NaN, Infinity, -Infinity, -1, null, undefined, "12"]) {
            assert.equal(formatClock(bad), "?", String(bad));
        }
    });
});

describe("formatSeconds (s/frame)", () => {
    it("uses two decimals below 10 s", () => {
        assert.equal(formatSeconds(0), "0.00");
        assert.equal(formatSeconds(0.5), "0.50");
        assert.equal(formatSeconds(2.345678), "2.35");
        assert.equal(formatSeconds(9.99), "9.99");
    });

    it("keeps two significant digits for very fast frames", () => {
        assert.equal(formatSeconds(0.042), "0.042");
        assert.equal(formatSeconds(0.0123), "0.012");
        assert.equal(formatSeconds(0.00049), "0.00049");
    });

    it("uses one decimal from 10 s and whole seconds from 100 s", () => {
        assert.equal(formatSeconds(9.996), "10.0");
        assert.equal(formatSeconds(12.34), "12.3");
        assert.equal(formatSeconds(99.94), "99.9");
        assert.equal(formatSeconds(99.96), "100");
        assert.equal(formatSeconds(154.4), "154");
    });

    it("gives ? for values that are not a duration", () => {
        for (const bad of [NaN, Infinity, -0.5, null, undefined]) assert.equal(formatSeconds(bad), "?");
        assert.equal(formatPerFrame(undefined), "? s/frame");
    });

    it("adds the unit", () => {
        assert.equal(formatPerFrame(2.345), "2.35 s/frame");
    });
});

describe("execution ids", () => {
    it("splits subgraph paths", () => {
        assert.deepEqual(splitExecutionId("12"), ["12"]);
        assert.deepEqual(splitExecutionId(7), ["7"]);
        assert.deepEqual(splitExecutionId("12:5"), ["12", "5"]);
        assert.deepEqual(splitExecutionId("3:12:5"), ["3", "12", "5"]);
        for (const bad of [null, undefined, "", "  ", "12:", ":5", "1::2"]) assert.equal(splitExecutionId(bad), null);
    });

    it("matches graph node ids directly or by the last part", () => {
        assert.equal(localNodeId("12:5"), "5");
        assert.equal(matchesNodeId("7", 7), true);
        assert.equal(matchesNodeId(7, "7"), true);
        assert.equal(matchesNodeId("12:5", 5), true);
        assert.equal(matchesNodeId("3:12:5", "5"), true);
        assert.equal(matchesNodeId("12:5", 12), false);
        assert.equal(matchesNodeId("17", 7), false);
        assert.equal(matchesNodeId(null, 7), false);
        assert.equal(matchesNodeId("7", null), false);
    });
});

describe("resolveDisplayNode", () => {
    // A tiny stand-in for LiteGraph graphs: getNodeById() looks ids up like LiteGraph's object map.
    const graph = (nodes) => {
        const byId = Object.fromEntries(nodes.map((n) => [String(n.id), n]));
        return { getNodeById: (id) => (id == null ? null : byId[id] ?? null) };
    };
    const sampler = (id) => ({ id, type: SAMPLER_TYPE });
    const inner = graph([sampler(5), { id: 6, type: "VAEDecode" }]);
    const innerNested = graph([sampler(9)]);
    const container = { id: 12, type: "subgraph-uuid", subgraph: inner };
    const outerContainer = { id: 3, type: "other-uuid", subgraph: graph([{ id: 4, type: "x-uuid", subgraph: innerNested }]) };
    const root = graph([sampler(7), { id: 5, type: "LoadImage" }, container, outerContainer]);
    const accept = (node, kind) => (kind === "container" ? Boolean(node.subgraph) : node.type === SAMPLER_TYPE);

    it("finds a root-level sampler", () => {
        assert.equal(resolveDisplayNode("7", root, root, accept).id, 7);
        assert.equal(resolveDisplayNode(7, root, undefined, accept).id, 7);
    });

    it("shows a subgraph's sampler on its subgraph node at the root", () => {
        assert.equal(resolveDisplayNode("12:5", root, root, accept), container);
        assert.equal(resolveDisplayNode("3:4:9", root, root, accept), outerContainer);
    });

    it("shows it on the sampler itself while the subgraph is open", () => {
        assert.equal(resolveDisplayNode("12:5", root, inner, accept).id, 5);
        assert.equal(resolveDisplayNode("3:4:9", root, innerNested, accept).id, 9);
    });

    it("falls back to the last part in a graph off the path, for samplers only", () => {
        const elsewhere = graph([sampler(5), { id: 9, type: "KSampler" }]);
        assert.equal(resolveDisplayNode("12:5", root, elsewhere, accept).id, 5);
        assert.equal(resolveDisplayNode("3:4:9", root, elsewhere, accept), null);
    });

    it("never shows on a node of another type with the same id", () => {
        assert.equal(resolveDisplayNode("6", root, root, accept), null);
        assert.equal(resolveDisplayNode("12:6", root, inner, accept), null);
        // "5" at the root is a LoadImage, not the sampler 12:5.
        assert.equal(resolveDisplayNode("5", root, root, accept), null);
        assert.equal(resolveDisplayNode("99", root, root, accept), null);
        assert.equal(resolveDisplayNode("99:5", root, root, accept), null);
        assert.equal(resolveDisplayNode(null, root, root, accept), null);
        assert.equal(resolveDisplayNode("7", null, null, accept), null);
    });
});

describe("ProgressBoard", () => {
    it("shows frame, speed and ETA while running", () => {
        const board = new ProgressBoard();
        assert.equal(board.handle(PROGRESS_EVENT, progress("7", 3, 120, 2.345, 274.4)), true);
        const state = board.get("7");
        assert.equal(state.phase, Phase.RUNNING);
        assert.equal(board.text("7"), "frame 3/120 · 2.35 s/frame · ETA 4:34");
        assert.equal(board.text(7), board.text("7"));
        assert.equal(fractionDone(state), 3 / 120);
    });

    it("is done after the last frame, with the average speed", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, progress("7", 119, 120, 2.3));
        board.handle(PROGRESS_EVENT, progress("7", 120, 120, 2.31, 0));
        assert.equal(board.get("7").phase, Phase.DONE);
        assert.equal(board.text("7"), "done · 120 frames · avg 2.31 s/frame");
        assert.equal(fractionDone(board.get("7")), 1);
        assert.equal(statusText({ ...board.get("7"), frame: 1, frames: 1 }), "done · 1 frame · avg 2.31 s/frame");
    });

    it("marks running samplers done when the prompt ends", () => {
        for (const [type, detail] of [["execution_success", { prompt_id: "p" }], ["executing", null], ["executing", undefined]]) {
            const board = new ProgressBoard();
            board.handle(PROGRESS_EVENT, progress("7", 4, 10, 1.5));
            assert.equal(board.handle(type, detail), true, type);
            assert.equal(board.text("7"), "done · 4 frames · avg 1.50 s/frame", type);
            assert.equal(board.handle(type, detail), false, "nothing left to finish");
        }
    });

    it("ignores the executing events of single nodes", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, progress("7", 4, 10));
        assert.equal(board.handle("executing", "8"), false);
        assert.equal(board.handle("executing", "7"), false);
        assert.equal(board.get("7").phase, Phase.RUNNING);
    });

    it("says where an interrupted run stopped", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, progress("7", 12, 120));
        assert.equal(board.handle("execution_interrupted", { prompt_id: "p", node_id: "7" }), true);
        assert.equal(board.text("7"), "cancelled at frame 12/120");
        // The "executing" null that follows an interrupt does not turn it into done.
        assert.equal(board.handle("executing", null), false);
        assert.equal(board.text("7"), "cancelled at frame 12/120");
    });

    it("says where a failed run stopped", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, progress("7", 2, 5));
        board.handle("execution_error", { prompt_id: "p", node_id: "7", exception_message: "boom" });
        assert.equal(board.get("7").phase, Phase.FAILED);
        assert.equal(board.text("7"), "failed after frame 2/5");
    });

    it("keeps a finished status when a later node is interrupted", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, progress("7", 5, 5));
        assert.equal(board.handle("execution_interrupted", { node_id: "9" }), false);
        assert.equal(board.get("7").phase, Phase.DONE);
    });

    it("starts over with a new run", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, progress("7", 10, 10, 3));
        board.handle("execution_success", {});
        assert.equal(board.get("7").phase, Phase.DONE);
        // execution_start of the next prompt drops the old status ...
        assert.equal(board.handle("execution_start", { prompt_id: "q" }), true);
        assert.equal(board.get("7"), null);
        assert.equal(board.text("7"), "");
        assert.equal(board.handle("execution_start", { prompt_id: "q" }), false);
        // ... and the first frame of the new run shows fresh numbers.
        board.handle(PROGRESS_EVENT, progress("7", 1, 4, 0.8));
        assert.equal(board.text("7"), "frame 1/4 · 0.80 s/frame · ETA 0:02");
    });

    it("replaces a finished status even without an execution_start in between", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, progress("7", 3, 8));
        board.handle("execution_interrupted", {});
        board.handle(PROGRESS_EVENT, progress("7", 1, 6, 4, 20));
        assert.equal(board.text("7"), "frame 1/6 · 4.00 s/frame · ETA 0:20");
    });

    it("tracks several samplers, subgraph ids included", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, progress("7", 10, 10));
        board.handle(PROGRESS_EVENT, progress("12:5", 3, 10, 65, 7 * 65));
        assert.equal(board.text("12:5"), "frame 3/10 · 65.0 s/frame · ETA 7:35");
        assert.equal(board.entries().length, 2);
        board.handle("execution_interrupted", {});
        assert.equal(board.get("7").phase, Phase.DONE);
        assert.equal(board.get("12:5").phase, Phase.CANCELLED);
    });

    it("drops finished statuses when another workflow is opened, not running ones", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, progress("7", 10, 10));
        board.handle(PROGRESS_EVENT, progress("8", 1, 10));
        assert.equal(board.dropFinished(), true);
        assert.equal(board.get("7"), null);
        assert.equal(board.get("8").phase, Phase.RUNNING);
        assert.equal(board.dropFinished(), false);
    });

    it("shows an hour-long ETA and an unknown speed", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, { node: "7", frame: 1, frames: 1000, s_per_frame: 4.5, eta_s: 4495.5 });
        assert.equal(board.text("7"), "frame 1/1000 · 4.50 s/frame · ETA 1:14:56");
        board.handle(PROGRESS_EVENT, { node: "7", frame: 2, frames: 1000, s_per_frame: null });
        assert.equal(board.text("7"), "frame 2/1000 · ? s/frame · ETA ?");
    });

    it("ignores malformed progress events", () => {
        const board = new ProgressBoard();
        for (const bad of [
            null, undefined, "7", {},
            { node: null, frame: 1, frames: 2 },
            { node: "", frame: 1, frames: 2 },
            { node: "7", frame: 1, frames: 0 },
            { node: "7", frame: -1, frames: 2 },
            { node: "7", frame: "x", frames: 2 },
        ]) {
            assert.equal(board.handle(PROGRESS_EVENT, bad), false, JSON.stringify(bad));
        }
        assert.equal(board.entries().length, 0);
        assert.equal(board.handle("something_else", {}), false);
    });

    it("clamps a frame past the end and accepts numeric ids", () => {
        const board = new ProgressBoard();
        board.handle(PROGRESS_EVENT, { node: 7, frame: 12, frames: 10, s_per_frame: 1, eta_s: 0 });
        assert.equal(board.get("7").frame, 10);
        assert.equal(board.get("7").phase, Phase.DONE);
    });
});

describe("placeStatus (where the pill goes)", () => {
    const sampler = { x: 1200, y: 260, w: 330, h: 270 }; // box with the title bar
    const pill = { w: 220, h: 20 };

    it("sits in the row above the title bar when nothing is there", () => {
        assert.deepEqual(placeStatus(sampler, pill, 0, []), { x: 1200, y: 238 });
    });

    it("goes one row up when the badges leave no room beside them", () => {
        assert.deepEqual(placeStatus(sampler, pill, 150, []), { x: 1200, y: 216 });
    });

    it("goes below the node when another node's bottom is just above (Appearance Encode above the sampler)", () => {
        const encode = { x: 1200, y: 30, w: 330, h: 214 }; // grown to y 244 by its widgets
        assert.deepEqual(placeStatus(sampler, pill, 0, [encode]), { x: 1200, y: 532 });
    });

    it("ignores nodes beside it", () => {
        const beside = { x: 1590, y: 30, w: 340, h: 600 };
        assert.deepEqual(placeStatus(sampler, pill, 0, [beside]), { x: 1200, y: 238 });
    });

    it("keeps the first spot when every spot is covered", () => {
        const everywhere = { x: 0, y: 0, w: 5000, h: 5000 };
        assert.deepEqual(placeStatus(sampler, pill, 0, [everywhere]), { x: 1200, y: 238 });
        assert.deepEqual(placeStatus(sampler, pill, 150, [everywhere]), { x: 1200, y: 216 });
    });
});
