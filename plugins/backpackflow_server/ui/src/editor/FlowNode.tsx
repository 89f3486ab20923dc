// A node on the canvas: its id, type and name, and a badge when the server found problems.
import { Handle, Position, type Node, type NodeProps } from "@xyflow/react";

export interface FlowNodeData extends Record<string, unknown> {
  type: string;
  name?: string;
  problems: string[];
  entry: boolean;
  known: boolean;
}

export type FlowNodeType = Node<FlowNodeData, "flowNode">;

export function FlowNode({ id, data, selected }: NodeProps<FlowNodeType>) {
  const classes = ["flow-node", selected ? "selected" : "", data.problems.length ? "invalid" : "", data.known ? "" : "unknown"];
  return (
    <div className={classes.join(" ")} title={data.problems.join("\n") || undefined}>
      <Handle type="target" position={Position.Top} />
      <div className="flow-node-head">
        <span className="flow-node-id">{id}</span>
        {data.entry && <span className="flow-node-entry">entry</span>}
      </div>
      <div className="flow-node-type">
        {data.type}
        {data.name ? ` · ${data.name}` : ""}
      </div>
      {data.problems.length > 0 && (
        <div className="flow-node-problems" role="note" aria-label={`Problems of ${id}`}>
          {data.problems.length === 1 ? data.problems[0] : `${data.problems.length} problems: ${data.problems[0]}`}
        </div>
      )}
      <Handle type="source" position={Position.Bottom} />
    </div>
  );
}
