// Flows the trace tests share: a fan-out to two parallel branches joined again, then a choice.
import type { EdgeConfig } from "../api/types";

export const PARALLEL_EDGES: EdgeConfig[] = [
  { from: "split", to: "left" },
  { from: "split", to: "right" },
  { from: "left", to: "join" },
  { from: "right", to: "join" },
];
