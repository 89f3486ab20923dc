// The run's graph, live: the workflow's nodes laid out left to right (dagre), each coloured by
// its status, the edges the run took highlighted. Each node's accessible name is its node id.
import { useMemo } from "react";
import { Background, Controls, type Edge, type Node, Position, ReactFlow } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import dagre from "@dagrejs/dagre";
import type { FlowDocument } from "../api/types";
import { edgeAction, edgeKey, type NodeStatus } from "./trace";

const WIDTH = 170;
/** About a node's rendered height (two lines of label). */
const INITIAL_HEIGHT = 44;
const HEIGHT = 56;

export const STATUS_LABEL: Record<NodeStatus, string> = {
  pending: "not run",
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
  canceled: "canceled",
  cache_hit: "cache hit",
  paused: "paused",
};

export function layout(flow: FlowDocument): Map<string, { x: number; y: number }> {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 60 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const node of flow.nodes) graph.setNode(node.id, { width: WIDTH, height: HEIGHT });
  for (const edge of flow.edges) {
    if (graph.hasNode(edge.from) && graph.hasNode(edge.to)) graph.setEdge(edge.from, edge.to);
  }
  dagre.layout(graph);
  const positions = new Map<string, { x: number; y: number }>();
  for (const node of flow.nodes) {
    const placed = graph.node(node.id);
    positions.set(node.id, { x: (placed?.x ?? 0) - WIDTH / 2, y: (placed?.y ?? 0) - HEIGHT / 2 });
  }
  return positions;
}

function edgeLabel(edge: FlowDocument["edges"][number]): string | undefined {
  if (typeof edge.condition === "string" && edge.condition) return edge.condition;
  if (typeof edge.when === "string" && edge.when) return `when ${edge.when}`;
  return undefined;
}

interface Props {
  flow: FlowDocument;
  nodeStatus: Map<string, NodeStatus>;
  takenEdges: Set<string>;
  version: number;
  selectedNode: string | null;
  onSelectNode: (nodeId: string) => void;
}

export function RunGraph({ flow, nodeStatus, takenEdges, version, selectedNode, onSelectNode }: Props) {
  const positions = useMemo(() => layout(flow), [flow]);
  const nodes: Node[] = useMemo(
    () =>
      flow.nodes.map((node) => {
        const status = nodeStatus.get(node.id) ?? "pending";
        return {
          id: node.id,
          position: positions.get(node.id) ?? { x: 0, y: 0 },
          data: {
            label: (
              <span className="run-node-label">
                <strong>{node.id}</strong>
                <small>
                  {node.type} · <span data-testid={`node-status-${node.id}`}>{STATUS_LABEL[status]}</span>
                </small>
              </span>
            ),
          },
          ariaLabel: node.id,
          className: `run-node status-${status}${selectedNode === node.id ? " selected-node" : ""}`,
          draggable: false,
          connectable: false,
          sourcePosition: Position.Right,
          targetPosition: Position.Left,
          style: { width: WIDTH },
          // sizes before React Flow measures the node: a node without them stays hidden until
          // measured, and every trace update hands React Flow new node objects
          initialWidth: WIDTH,
          initialHeight: INITIAL_HEIGHT,
        };
      }),
    // version: the trace mutates in place
    [flow, positions, version, selectedNode],
  );
  const edges: Edge[] = useMemo(
    () =>
      flow.edges.map((edge, index) => {
        const taken = takenEdges.has(edgeKey(edge.from, edge.to, edgeAction(edge)));
        return {
          id: `e${index}-${edge.from}-${edge.to}`,
          source: edge.from,
          target: edge.to,
          label: edgeLabel(edge),
          animated: taken,
          className: taken ? "edge-taken" : "edge-idle",
          ariaLabel: `edge ${edge.from} to ${edge.to}${taken ? " (taken)" : ""}`,
          data: { taken },
        };
      }),
    [flow, version],
  );
  return (
    <div className="run-graph" aria-label="Run graph">
      <ReactFlow
        nodes={nodes}
        edges={edges}
        fitView
        nodesDraggable={false}
        nodesConnectable={false}
        onNodeClick={(_, node) => onSelectNode(node.id)}
        proOptions={{ hideAttribution: true }}
      >
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
