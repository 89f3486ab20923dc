// Completion of `{{ inputs.x }}` and `{{ node.y.output }}` in template fields: what the flow
// declares as inputs and what the other nodes write (their data contracts).
import type { FlowDocument, NodeTypeInfo } from "../api/types";

export interface Suggestion {
  /** what goes between the braces */
  text: string;
  detail: string;
}

export function suggestions(doc: FlowDocument, nodeTypes: NodeTypeInfo[], currentNode?: string): Suggestion[] {
  const found: Suggestion[] = [];
  const inputs = (doc.inputs ?? {}) as Record<string, { description?: string }>;
  for (const [name, input] of Object.entries(inputs)) {
    found.push({ text: `inputs.${name}`, detail: input?.description ?? "a flow input" });
  }
  const types = new Map(nodeTypes.map((type) => [type.name, type]));
  for (const node of doc.nodes) {
    if (node.id === currentNode) continue;
    const writes = types.get(node.type)?.writes ?? {};
    const described = Object.values(writes)[0]?.description;
    found.push({
      text: `node.${node.id}.output`,
      detail: typeof described === "string" ? described : `what ${node.type} node ${node.id} returns`,
    });
  }
  return found;
}

/** The `{{ partial` being typed just before ``caret``, or null when not inside braces. */
export function openTemplate(text: string, caret: number): { start: number; partial: string } | null {
  const before = text.slice(0, caret);
  const open = before.lastIndexOf("{{");
  if (open < 0 || before.indexOf("}}", open) >= 0) return null;
  const partial = before.slice(open + 2).trimStart();
  if (/[^A-Za-z0-9_.]/.test(partial)) return null;
  return { start: open, partial };
}

/** ``text`` with the open template at ``start`` (up to ``caret``) completed as ``{{ choice }}``. */
export function complete(text: string, start: number, caret: number, choice: string): { text: string; caret: number } {
  const after = text.slice(caret).replace(/^[A-Za-z0-9_.]*\s*(\}\})?/, "");
  const inserted = `{{ ${choice} }}`;
  return { text: text.slice(0, start) + inserted + after, caret: start + inserted.length };
}
