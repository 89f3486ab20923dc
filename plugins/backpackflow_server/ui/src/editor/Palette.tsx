// Every installed node type (GET /api/node-types), grouped by the plugin that registers it.
// Click one to add it to the canvas, or drag it onto the canvas.
import type { NodeTypeInfo } from "../api/types";

export const DRAG_TYPE = "application/x-backpackflow-node-type";

export function Palette({ nodeTypes, onAdd, disabled }: { nodeTypes: NodeTypeInfo[]; onAdd: (type: string) => void; disabled?: boolean }) {
  const plugins = [...new Set(nodeTypes.map((type) => type.plugin))].sort();
  return (
    <aside className="palette" aria-label="Node types">
      <h2>Add a node</h2>
      {nodeTypes.length === 0 && <p className="hint">No node type is installed: install a node package and restart the service.</p>}
      {plugins.map((plugin) => (
        <section key={plugin}>
          <h3>{plugin}</h3>
          {nodeTypes
            .filter((type) => type.plugin === plugin)
            .map((type) => (
              <button
                key={type.name}
                type="button"
                className="palette-item"
                draggable={!disabled}
                disabled={disabled}
                aria-label={`Add ${type.name} node`}
                title={type.description}
                onClick={() => onAdd(type.name)}
                onDragStart={(event) => {
                  event.dataTransfer.setData(DRAG_TYPE, type.name);
                  event.dataTransfer.effectAllowed = "copy";
                }}
              >
                <strong>{type.name}</strong>
                <small>{type.description.split("\n")[0]}</small>
              </button>
            ))}
        </section>
      ))}
    </aside>
  );
}
