// The editor's model: the flow document is the one source of truth; the canvas's nodes and
// edges are derived from it (and node positions, which the flow schema has no place for, are
// kept beside it). Pure functions, unit-tested in model.test.ts.
import type { EdgeConfig, FlowDocument, NodeConfig, Problem } from "../api/types";

export const FLOW_VERSION = "2.0.0";
export const DEFAULT_ACTION = "default";

export interface Point {
  x: number;
  y: number;
}

export type Positions = Record<string, Point>;

/** What one undo step restores: the document and where its nodes are drawn. */
export interface EditorState {
  doc: FlowDocument;
  positions: Positions;
}

export function emptyFlow(): FlowDocument {
  return { version: FLOW_VERSION, nodes: [], edges: [] };
}

/** A document with nodes and edges lists even when the stored one leaves edges out. */
export function normalise(doc: FlowDocument): FlowDocument {
  return { ...doc, nodes: doc.nodes ?? [], edges: doc.edges ?? [] };
}

/** The id a new node of ``type`` gets: ``type``, then ``type_2``, ``type_3``... */
export function newNodeId(doc: FlowDocument, type: string): string {
  const taken = new Set(doc.nodes.map((node) => node.id));
  const base = type.replace(/[^A-Za-z0-9_.:-]+/g, "_").replace(/^[^A-Za-z0-9]+/, "") || "node";
  if (!taken.has(base)) return base;
  for (let n = 2; ; n += 1) if (!taken.has(`${base}_${n}`)) return `${base}_${n}`;
}

export const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

export function addNode(state: EditorState, type: string, at: Point, params: Record<string, unknown> = {}): EditorState {
  const id = newNodeId(state.doc, type);
  const node: NodeConfig = { type, id, params };
  return {
    doc: { ...state.doc, nodes: [...state.doc.nodes, node] },
    positions: { ...state.positions, [id]: at },
  };
}

export function updateNode(doc: FlowDocument, id: string, change: (node: NodeConfig) => NodeConfig): FlowDocument {
  return { ...doc, nodes: doc.nodes.map((node) => (node.id === id ? change(node) : node)) };
}

/** Rename a node: its edges and the flow's entry follow. Throws when the id is not usable. */
export function renameNode(state: EditorState, from: string, to: string): EditorState {
  if (from === to) return state;
  if (!NODE_ID.test(to)) throw new Error(`"${to}" is not a node id: letters, digits and _ . : - (not first)`);
  if (state.doc.nodes.some((node) => node.id === to)) throw new Error(`another node is already called "${to}"`);
  const doc: FlowDocument = {
    ...state.doc,
    nodes: state.doc.nodes.map((node) => (node.id === from ? { ...node, id: to } : node)),
    edges: state.doc.edges.map((edge) => ({
      ...edge,
      from: edge.from === from ? to : edge.from,
      to: edge.to === from ? to : edge.to,
    })),
  };
  if (doc.entry === from) doc.entry = to;
  const { [from]: position, ...positions } = state.positions;
  return { doc, positions: position ? { ...positions, [to]: position } : positions };
}

export function removeNodes(state: EditorState, ids: Iterable<string>): EditorState {
  const gone = new Set(ids);
  const doc: FlowDocument = {
    ...state.doc,
    nodes: state.doc.nodes.filter((node) => !gone.has(node.id)),
    edges: state.doc.edges.filter((edge) => !gone.has(edge.from) && !gone.has(edge.to)),
  };
  if (doc.entry !== undefined && gone.has(doc.entry)) delete doc.entry;
  const positions = Object.fromEntries(Object.entries(state.positions).filter(([id]) => !gone.has(id)));
  return { doc, positions };
}

export function addEdge(doc: FlowDocument, from: string, to: string, action?: string): FlowDocument {
  const edge: EdgeConfig = { from, to };
  if (action && action !== DEFAULT_ACTION) edge.condition = action;
  return { ...doc, edges: [...doc.edges, edge] };
}

export function updateEdge(doc: FlowDocument, index: number, change: (edge: EdgeConfig) => EdgeConfig): FlowDocument {
  return { ...doc, edges: doc.edges.map((edge, i) => (i === index ? change(edge) : edge)) };
}

export function removeEdges(doc: FlowDocument, indexes: Iterable<number>): FlowDocument {
  const gone = new Set(indexes);
  return { ...doc, edges: doc.edges.filter((_, i) => !gone.has(i)) };
}

/** The canvas id of the edge at ``index`` (edges have no id in a flow: their place is it). */
export function edgeKey(index: number): string {
  return `edge-${index}`;
}

export function edgeIndex(key: string): number {
  return Number(key.slice("edge-".length));
}

/** An edge's label on the canvas: its action (unless "default") and its `when` condition. */
export function edgeLabel(edge: EdgeConfig): string {
  const parts: string[] = [];
  if (edge.condition && edge.condition !== DEFAULT_ACTION) parts.push(edge.condition);
  if (typeof edge.when === "string" && edge.when) parts.push(`when ${edge.when}`);
  else if (edge.when && typeof edge.when === "object") parts.push("when {…}");
  return parts.join(" · ");
}

// --- the server's problems, placed where the user can fix them ---

export interface PlacedProblems {
  /** node id → problems on it; ``fields`` → path inside the node (``params.model``) → messages */
  nodes: Record<string, { messages: string[]; fields: Record<string, string[]> }>;
  /** edge index → messages */
  edges: Record<number, string[]>;
  /** problems of the flow as a whole (or of places the editor does not draw) */
  flow: string[];
}

const STEP = /\.([^.[\]]+)|\[(\d+)\]/g;

/** ``$.nodes[2].params.model`` → ``["nodes", 2, "params", "model"]``. */
export function parsePath(path: string): (string | number)[] {
  const steps: (string | number)[] = [];
  for (const match of path.replace(/^\$/, "").matchAll(STEP)) {
    steps.push(match[2] !== undefined ? Number(match[2]) : match[1]);
  }
  return steps;
}

/** Put each problem (a JSON path into the flow and a message) on its node, edge or the flow. */
export function placeProblems(doc: FlowDocument, problems: Pick<Problem, "path" | "msg">[]): PlacedProblems {
  const placed: PlacedProblems = { nodes: {}, edges: {}, flow: [] };
  for (const problem of problems) {
    const steps = parsePath(problem.path);
    if (steps[0] === "nodes" && typeof steps[1] === "number" && doc.nodes[steps[1]]) {
      const id = doc.nodes[steps[1]].id;
      const entry = (placed.nodes[id] ??= { messages: [], fields: {} });
      const field = steps.slice(2).join(".");
      entry.messages.push(field ? `${field}: ${problem.msg}` : problem.msg);
      if (field) (entry.fields[field] ??= []).push(problem.msg);
    } else if (steps[0] === "edges" && typeof steps[1] === "number") {
      const field = steps.slice(2).join(".");
      (placed.edges[steps[1]] ??= []).push(field ? `${field}: ${problem.msg}` : problem.msg);
    } else {
      placed.flow.push(problem.path && problem.path !== "$" ? `${problem.path}: ${problem.msg}` : problem.msg);
    }
  }
  return placed;
}

const REQUIRED = /^'([^']+)' is a required property$/;

/** RJSF's ``extraErrors`` for a node's params from its placed field problems. */
export function paramsErrors(fields: Record<string, string[]>): Record<string, unknown> {
  const errors: Record<string, unknown> = {};
  for (const [rawField, rawMessages] of Object.entries(fields)) {
    // "params: 'tool' is a required property" belongs on the missing field
    const missing = rawField === "params" ? rawMessages.map((message) => REQUIRED.exec(message)?.[1]) : [];
    if (missing.length && missing.every(Boolean)) {
      for (const name of missing) {
        const at = (errors[name!] ??= {}) as Record<string, unknown>;
        at.__errors = [...((at.__errors as string[] | undefined) ?? []), "required"];
      }
      continue;
    }
    const field = rawField;
    const messages = rawMessages;
    const steps = field.split(".");
    if (steps[0] !== "params") continue;
    let at = errors;
    for (const step of steps.slice(1)) at = (at[step] ??= {}) as Record<string, unknown>;
    at.__errors = [...((at.__errors as string[] | undefined) ?? []), ...messages];
  }
  return errors;
}

/** Drop ``undefined`` members (a cleared form field) so the document stays plain JSON. */
export function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}
