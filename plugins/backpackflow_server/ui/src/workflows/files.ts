// Import and export of workflows as flow JSON files: the same documents `backpackflow
// validate` and `backpackflow run` read, so a file exported here runs from the command line.
import type { FlowDocument, Workflow } from "../api/types";

export interface ImportedWorkflow {
  name: string;
  description: string | null;
  graph_json: FlowDocument;
}

/** A flow file's document with the workflow's name and description in it. */
export function exportDocument(workflow: Pick<Workflow, "name" | "description" | "graph_json">): FlowDocument {
  const document: FlowDocument = { ...workflow.graph_json, name: workflow.name };
  if (workflow.description) document.description = workflow.description;
  return document;
}

export function fileName(name: string): string {
  const base = name.trim().replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "");
  return `${base || "workflow"}.json`;
}

/** Read a flow file (or a workflow as the API returns it): throws an Error saying what is wrong. */
export function parseImport(text: string, fallbackName: string): ImportedWorkflow {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`the file is not JSON: ${(error as Error).message}`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error("a flow file holds a JSON object with a nodes list");
  }
  const object = parsed as Record<string, unknown>;
  const document = (
    object.graph_json && typeof object.graph_json === "object" ? object.graph_json : object
  ) as FlowDocument;
  if (!Array.isArray(document.nodes)) {
    throw new Error("$.nodes: a flow file needs a nodes list");
  }
  const name = typeof object.name === "string" && object.name.trim() ? object.name.trim() : fallbackName;
  const description = typeof object.description === "string" ? object.description : null;
  return { name, description, graph_json: document };
}

export function download(name: string, document: unknown): void {
  const blob = new Blob([JSON.stringify(document, null, 2) + "\n"], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = Object.assign(window.document.createElement("a"), { href: url, download: fileName(name) });
  window.document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}
