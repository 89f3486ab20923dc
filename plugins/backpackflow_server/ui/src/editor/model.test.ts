import { describe, expect, it } from "vitest";
import type { FlowDocument } from "../api/types";
import { autoLayout, completePositions } from "./layout";
import {
  addEdge,
  addNode,
  edgeLabel,
  emptyFlow,
  newNodeId,
  normalise,
  paramsErrors,
  parsePath,
  placeProblems,
  plain,
  removeEdges,
  removeNodes,
  renameNode,
  type EditorState,
} from "./model";

const research: FlowDocument = {
  version: "2.0.0",
  name: "research",
  inputs: { topic: { description: "what to focus on", default: "risks" } },
  limits: { max_steps: 10 },
  nodes: [
    { type: "tool", id: "fetch", params: { tool: "read_file", arguments: { path: "notes.md" } } },
    { type: "llm", id: "summarize", params: { prompt: "Summarize {{ text }}" }, inputs: { text: "{{ node.fetch.output }}" } },
    { type: "router", id: "decide", params: { rule: "size(text) > 2000 ? 'deep' : 'shallow'" } },
    { type: "llm", id: "deep", params: { prompt: "Go deep", response_format: "json" } },
  ],
  edges: [
    { from: "fetch", to: "summarize" },
    { from: "summarize", to: "decide" },
    { from: "decide", to: "deep", when: "branch == 'deep'" },
  ],
};

function state(doc: FlowDocument): EditorState {
  return { doc, positions: autoLayout(doc) };
}

describe("the flow document and the canvas", () => {
  it("round-trips a flow through the editor state and JSON unchanged", () => {
    const loaded = state(normalise(research));
    expect(JSON.parse(JSON.stringify(plain(loaded.doc)))).toEqual(research);
    expect(Object.keys(loaded.positions).sort()).toEqual(["decide", "deep", "fetch", "summarize"]);
  });

  it("builds a flow from an empty canvas", () => {
    let built = { doc: emptyFlow(), positions: {} } as EditorState;
    built = addNode(built, "tool", { x: 0, y: 0 }, { tool: "read_file" });
    built = addNode(built, "llm", { x: 0, y: 100 }, { prompt: "hi" });
    built = addNode(built, "llm", { x: 0, y: 200 });
    built = { ...built, doc: addEdge(addEdge(built.doc, "tool", "llm"), "llm", "llm_2", "long") };
    expect(built.doc.nodes.map((node) => node.id)).toEqual(["tool", "llm", "llm_2"]);
    expect(built.doc.edges).toEqual([
      { from: "tool", to: "llm" },
      { from: "llm", to: "llm_2", condition: "long" },
    ]);
    expect(edgeLabel(built.doc.edges[1])).toBe("long");
  });

  it("renames a node with its edges and the entry, and refuses a taken or bad id", () => {
    const renamed = renameNode(state({ ...research, entry: "fetch" }), "fetch", "load");
    expect(renamed.doc.entry).toBe("load");
    expect(renamed.doc.edges[0]).toEqual({ from: "load", to: "summarize" });
    expect(renamed.positions.load).toBeDefined();
    expect(renamed.positions.fetch).toBeUndefined();
    expect(() => renameNode(state(research), "fetch", "deep")).toThrow(/already called/);
    expect(() => renameNode(state(research), "fetch", "-x")).toThrow(/not a node id/);
  });

  it("removes nodes with their edges, and edges by place", () => {
    const without = removeNodes(state(research), ["summarize"]);
    expect(without.doc.nodes).toHaveLength(3);
    expect(without.doc.edges).toEqual([{ from: "decide", to: "deep", when: "branch == 'deep'" }]);
    expect(removeEdges(research, [0, 2]).edges).toEqual([{ from: "summarize", to: "decide" }]);
  });

  it("gives new nodes unused ids", () => {
    expect(newNodeId(research, "llm")).toBe("llm");
    expect(newNodeId({ ...research, nodes: [...research.nodes, { type: "llm", id: "llm" }] }, "llm")).toBe("llm_2");
  });

  it("keeps known positions and lays out the rest", () => {
    const positions = completePositions(research, { fetch: { x: 999, y: 999 } });
    expect(positions.fetch).toEqual({ x: 999, y: 999 });
    expect(positions.deep.y).toBeGreaterThan(positions.summarize.y);
  });
});

describe("the service's problems", () => {
  it("parses JSON paths", () => {
    expect(parsePath("$.nodes[2].params.model")).toEqual(["nodes", 2, "params", "model"]);
    expect(parsePath("$")).toEqual([]);
  });

  it("puts each problem on its node and field, edge, or the flow", () => {
    const placed = placeProblems(research, [
      { path: "$.nodes[1].params.temperature", msg: "5 is greater than the maximum of 2" },
      { path: "$.nodes[0].params", msg: "'tool' is a required property" },
      { path: "$.edges[2].when", msg: "not a CEL expression" },
      { path: "$.limits.max_steps", msg: "must be positive" },
    ]);
    expect(placed.nodes.summarize.fields).toEqual({ "params.temperature": ["5 is greater than the maximum of 2"] });
    expect(placed.nodes.summarize.messages).toEqual(["params.temperature: 5 is greater than the maximum of 2"]);
    expect(placed.edges[2]).toEqual(["when: not a CEL expression"]);
    expect(placed.flow).toEqual(["$.limits.max_steps: must be positive"]);
    expect(paramsErrors(placed.nodes.summarize.fields)).toEqual({ temperature: { __errors: ["5 is greater than the maximum of 2"] } });
    expect(paramsErrors(placed.nodes.fetch.fields)).toEqual({ tool: { __errors: ["required"] } });
  });
});
