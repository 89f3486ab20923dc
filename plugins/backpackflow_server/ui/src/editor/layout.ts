// Auto-layout with dagre: nodes ranked along the edges, top to bottom.
import dagre from "@dagrejs/dagre";
import type { FlowDocument } from "../api/types";
import type { Positions } from "./model";

export const NODE_WIDTH = 200;
export const NODE_HEIGHT = 64;

export function autoLayout(doc: FlowDocument): Positions {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "TB", nodesep: 60, ranksep: 80, marginx: 20, marginy: 20 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const node of doc.nodes) graph.setNode(node.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const edge of doc.edges) {
    if (graph.hasNode(edge.from) && graph.hasNode(edge.to)) graph.setEdge(edge.from, edge.to);
  }
  dagre.layout(graph);
  const positions: Positions = {};
  for (const node of doc.nodes) {
    const placed = graph.node(node.id);
    positions[node.id] = { x: Math.round(placed.x - NODE_WIDTH / 2), y: Math.round(placed.y - NODE_HEIGHT / 2) };
  }
  return positions;
}

/** Positions for every node: the known ones kept, the rest from a layout of the whole flow. */
export function completePositions(doc: FlowDocument, known: Positions): Positions {
  if (doc.nodes.every((node) => known[node.id])) return known;
  const laid = autoLayout(doc);
  return Object.fromEntries(doc.nodes.map((node) => [node.id, known[node.id] ?? laid[node.id]]));
}
