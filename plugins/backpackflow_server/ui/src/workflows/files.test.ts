import { describe, expect, it } from "vitest";
import { exportDocument, fileName, parseImport } from "./files";
import { matches } from "./WorkflowsPage";

const graph = { version: "2.0.0", nodes: [{ type: "llm", id: "a" }], edges: [] };

describe("flow files", () => {
  it("exports a flow with its name and imports it back", () => {
    const exported = exportDocument({ name: "My flow", description: "does things", graph_json: graph });
    expect(exported).toEqual({ ...graph, name: "My flow", description: "does things" });
    expect(parseImport(JSON.stringify(exported), "file")).toEqual({
      name: "My flow",
      description: "does things",
      graph_json: exported,
    });
    expect(fileName("My flow / v2")).toBe("My-flow-v2.json");
  });

  it("takes a workflow as the API returns it, and names a nameless flow after its file", () => {
    expect(parseImport(JSON.stringify({ name: "w", graph_json: graph }), "f").graph_json).toEqual(graph);
    expect(parseImport(JSON.stringify(graph), "from-file").name).toBe("from-file");
  });

  it("says what is wrong with a file that is not a flow", () => {
    expect(() => parseImport("{", "f")).toThrow(/not JSON/);
    expect(() => parseImport("[1]", "f")).toThrow(/JSON object/);
    expect(() => parseImport('{"nodes": 3}', "f")).toThrow(/\$\.nodes/);
  });
});

describe("search", () => {
  it("matches names, descriptions and ids, ignoring case", () => {
    const workflow = { id: "01abc", name: "Research", description: "grid batteries" };
    expect(matches(workflow, "")).toBe(true);
    expect(matches(workflow, "research")).toBe(true);
    expect(matches(workflow, "BATTER")).toBe(true);
    expect(matches(workflow, "01ab")).toBe(true);
    expect(matches(workflow, "solar")).toBe(false);
  });
});
