// Pure helpers of the run view (tested with Vitest): the run form's schema from the flow's
// declared inputs, the commit a "Fork from here" starts from, approvals.
import type { FlowDocument } from "../api/types";
import type { CommitInfo } from "./api";

interface InputDeclaration {
  description?: string | null;
  schema?: Record<string, unknown> | boolean | null;
  default?: unknown;
  required?: boolean;
}

/** Keywords that already say what a value looks like. */
const SHAPED = ["type", "enum", "const", "$ref", "anyOf", "oneOf", "allOf"];

/** An input declared without a schema takes any JSON; its form field is its default's type
 * (text when it has none). */
function typeOf(value: unknown): string {
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  if (typeof value === "boolean") return "boolean";
  if (Array.isArray(value)) return "array";
  if (value !== null && typeof value === "object") return "object";
  return "string";
}

/** The JSON Schema of a run's input form: one property per declared input (RJSF renders it). */
export function inputsSchema(flow: FlowDocument | null | undefined): Record<string, unknown> {
  const declared = (flow?.inputs ?? {}) as Record<string, InputDeclaration>;
  const properties: Record<string, unknown> = {};
  const required: string[] = [];
  for (const [name, input] of Object.entries(declared)) {
    const schema = input && typeof input.schema === "object" && input.schema !== null ? { ...input.schema } : {};
    if (input?.description && !("description" in schema)) schema.description = input.description;
    if (input?.default !== undefined && input.default !== null && !("default" in schema)) schema.default = input.default;
    if (!("title" in schema)) schema.title = name;
    if (!SHAPED.some((keyword) => keyword in schema)) schema.type = typeOf(input?.default);
    properties[name] = schema;
    if (input?.required) required.push(name);
  }
  return { type: "object", properties, required };
}

export function hasInputs(flow: FlowDocument | null | undefined): boolean {
  return Object.keys((flow?.inputs ?? {}) as Record<string, unknown>).length > 0;
}

/**
 * The commit to fork from so that the new run goes on right after ``step``: the step's last
 * commit, else the last commit made before it (its inputs at least). Commits a fork inherited
 * cannot be forked from (the service refuses them). Null: nothing to fork from.
 */
export function forkCommit(commits: CommitInfo[], step: number): CommitInfo | null {
  let chosen: CommitInfo | null = null;
  for (const commit of commits) {
    if (commit.inherited) continue;
    if (commit.step === null || commit.step <= step) chosen = commit;
    else break;
  }
  return chosen;
}

/** An `approval` node's question: an object answer with a boolean `approved`. */
export function isApproval(schema: Record<string, unknown> | null): boolean {
  const properties = (schema?.properties ?? null) as Record<string, { type?: unknown }> | null;
  return Boolean(properties && properties.approved && properties.approved.type === "boolean");
}

/** JSON as people read it, long values kept whole (the Raw JSON tab shows everything). */
export function pretty(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

/** The chat messages of a prompt, or null when it is not a list of {role, content}. */
export function chatMessages(value: unknown): { role: string; content: string }[] | null {
  if (!Array.isArray(value)) return null;
  const messages: { role: string; content: string }[] = [];
  for (const item of value) {
    if (!item || typeof item !== "object") return null;
    const { role, content } = item as { role?: unknown; content?: unknown };
    if (typeof role !== "string") return null;
    messages.push({ role, content: typeof content === "string" ? content : JSON.stringify(content, null, 2) });
  }
  return messages;
}
