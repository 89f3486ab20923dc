import { describe, expect, it } from "vitest";
import { complete, openTemplate, resolveKey, suggestions } from "./completion";

describe("template completion", () => {
  const doc = {
    version: "2.0.0",
    inputs: { topic: { description: "the subject" } },
    nodes: [
      { type: "tool", id: "fetch", params: { output_key: "table" } },
      { type: "llm", id: "write", inputs: { facts: "{{ node.fetch.output }}" } },
    ],
    edges: [],
  };
  const types = [
    { name: "tool", description: "", plugin: "nodes", dependencies: [], params_schema: {}, reads: {}, writes: { "{output_key|id}": { description: "the tool's result" } } },
  ];

  it("offers the flow's inputs and the other nodes' outputs", () => {
    expect(suggestions(doc, types, "write")).toEqual([
      { text: "inputs.topic", detail: "the subject" },
      { text: "node.fetch.output", detail: "the tool's result" },
      { text: "state.table", detail: "written by fetch: the tool's result" },
      { text: "facts", detail: "this node's input binding" },
    ]);
  });

  it("resolves contract keys as the kernel does", () => {
    expect(resolveKey("{output_key|id}", {}, "fetch")).toBe("fetch");
    expect(resolveKey("{output_key|id}", { output_key: "t" }, "fetch")).toBe("t");
    expect(resolveKey("{source}", {}, "x")).toBeNull();
    expect(resolveKey("plain", {}, "x")).toBe("plain");
  });

  it("finds the template being typed and completes it", () => {
    expect(openTemplate("Summarize {{ no", 15)).toEqual({ start: 10, partial: "no" });
    expect(openTemplate("{{ a }} then", 12)).toBeNull();
    expect(complete("Summarize {{ no", 10, 15, "node.fetch.output")).toEqual({
      text: "Summarize {{ node.fetch.output }}",
      caret: 33,
    });
    expect(complete("x {{ inp }} y", 2, 8, "inputs.topic").text).toBe("x {{ inputs.topic }} y");
  });
});
