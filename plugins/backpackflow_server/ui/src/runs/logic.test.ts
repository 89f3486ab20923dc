import type { RJSFSchema } from "@rjsf/utils";
import { describe, expect, it } from "vitest";
import type { CommitInfo } from "./api";
import { followAfterScroll, atBottom } from "./autoscroll";
import { addDecimal, money, subtractDecimal } from "./decimal";
import { chatMessages, forkCommit, inputsSchema, isApproval } from "./logic";

function commit(seq: number, step: number | null, inherited = false): CommitInfo {
  return { commit_id: `c${seq}`, seq, parent_id: null, timestamp: seq, node_id: "n", node_name: "n", namespace: null, op: "pack", key: "k", version: 1, tags: [], step, inherited };
}

describe("exact money", () => {
  it("adds and subtracts decimal text without rounding", () => {
    expect(addDecimal("0.1", "0.2")).toBe("0.3");
    expect(addDecimal("0.0000050", "0.000123")).toBe("0.0001280");
    expect(addDecimal("0", "12")).toBe("12");
    expect(subtractDecimal("0.1", "0.25")).toBe("-0.15");
    expect(addDecimal("not money", "1.5")).toBe("1.5");
    expect(money("-0.15")).toBe("-$0.15");
  });
});

describe("the auto-scroll rule", () => {
  it("follows at the bottom, stops when the user scrolls up, follows again at the bottom", () => {
    expect(atBottom(900, 100, 1000)).toBe(true);
    expect(atBottom(880, 100, 1000)).toBe(true); // within the slack
    expect(atBottom(500, 100, 1000)).toBe(false);
    // the user scrolled up: stop following
    expect(followAfterScroll(true, false, 500, 100, 1000)).toBe(false);
    // the list's own scroll (following new rows) never stops it, wherever it lands mid-way
    expect(followAfterScroll(true, true, 500, 100, 1000)).toBe(true);
    // new rows arrive while the user reads: not following, and the list's scroll does not start it
    expect(followAfterScroll(false, true, 900, 100, 1000)).toBe(false);
    // the user scrolled back to the bottom: follow again
    expect(followAfterScroll(false, false, 900, 100, 1000)).toBe(true);
  });
});

describe("the run form", () => {
  it("is generated from the flow's declared inputs", () => {
    const schema = inputsSchema({
      nodes: [],
      edges: [],
      inputs: {
        topic: { schema: { type: "string" }, required: true, description: "what to research" },
        depth: { schema: { type: "integer", minimum: 1 }, default: 2 },
      },
    });
    expect(schema).toEqual({
      type: "object",
      required: ["topic"],
      properties: {
        topic: { type: "string", description: "what to research", title: "topic" },
        depth: { type: "integer", minimum: 1, default: 2, title: "depth" },
      },
    });
    expect(inputsSchema({ nodes: [], edges: [] })).toEqual({ type: "object", properties: {}, required: [] });
    // declared without a schema: a field of its default's type, else text
    const loose = inputsSchema({ nodes: [], edges: [], inputs: { doc: { default: "notes.md" }, n: { default: 3 }, any: {} } });
    expect(loose.properties).toEqual({
      doc: { default: "notes.md", title: "doc", type: "string" },
      n: { default: 3, title: "n", type: "integer" },
      any: { title: "any", type: "string" },
    });
  });
});

describe("forking from a step", () => {
  it("starts after the step's last commit, else the last one before it; never an inherited one", () => {
    const commits = [commit(1, null, true), commit(2, null), commit(3, 1), commit(4, 1), commit(5, 3), commit(6, 4)];
    expect(forkCommit(commits, 1)?.commit_id).toBe("c4");
    expect(forkCommit(commits, 2)?.commit_id).toBe("c4"); // step 2 wrote nothing
    expect(forkCommit(commits, 4)?.commit_id).toBe("c6");
    expect(forkCommit([commit(1, null, true)], 1)).toBeNull();
  });
});

describe("questions and prompts", () => {
  it("tells an approval from another question", () => {
    expect(isApproval({ type: "object", properties: { approved: { type: "boolean" }, comment: { type: "string" } } })).toBe(true);
    expect(isApproval({ type: "integer", minimum: 1 })).toBe(false);
    expect(isApproval(null)).toBe(false);
  });

  it("reads chat messages, or says the prompt is something else", () => {
    expect(chatMessages([{ role: "user", content: "hi" }])).toEqual([{ role: "user", content: "hi" }]);
    expect(chatMessages("plain")).toBeNull();
    expect(chatMessages([{ content: "no role" }])).toBeNull();
  });
});

describe("the form validator (no eval: the page's CSP forbids it)", () => {
  it("names the field a value breaks", async () => {
    const { formValidator } = await import("../components/formValidator");
    const schema: RJSFSchema = { type: "object", required: ["topic"], properties: { topic: { type: "string" }, depth: { type: "integer", minimum: 1 } } };
    const bad = formValidator.validateFormData({ depth: 0 }, schema);
    expect(bad.errors.map((error) => error.property).sort()).toEqual([".depth", ".topic"]);
    expect(bad.errorSchema.depth?.__errors?.[0]).toMatch(/1/);
    expect(formValidator.validateFormData({ topic: "x", depth: 2 }, schema).errors).toEqual([]);
    expect(formValidator.isValid({ type: "integer" }, 3, {})).toBe(true);
    expect(formValidator.isValid({ type: "integer" }, "3", {})).toBe(false);
  });
});
