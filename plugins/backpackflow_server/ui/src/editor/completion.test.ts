import { describe, expect, it } from "vitest";
import { complete, openTemplate, suggestions } from "./completion";

describe("template completion", () => {
  const doc = {
    version: "2.0.0",
    inputs: { topic: { description: "the subject" } },
    nodes: [
      { type: "tool", id: "fetch" },
      { type: "llm", id: "write" },
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
    ]);
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
