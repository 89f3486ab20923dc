// Undo and redo over editor states. Quick successive changes of one thing (typing in a field,
// dragging a node) are one step: a change with the same group as the last, within a second,
// replaces it instead of adding a step.
export interface History<T> {
  past: T[];
  present: T;
  future: T[];
  group: string | null;
  at: number;
}

export const HISTORY_LIMIT = 200;
const COALESCE_MS = 1000;

export function start<T>(present: T): History<T> {
  return { past: [], present, future: [], group: null, at: 0 };
}

export function commit<T>(history: History<T>, next: T, group: string | null = null, now = Date.now()): History<T> {
  if (next === history.present) return history;
  if (group !== null && group === history.group && now - history.at < COALESCE_MS) {
    return { ...history, present: next, future: [], at: now };
  }
  const past = [...history.past, history.present].slice(-HISTORY_LIMIT);
  return { past, present: next, future: [], group, at: now };
}

export function undo<T>(history: History<T>): History<T> {
  if (history.past.length === 0) return history;
  const present = history.past[history.past.length - 1];
  return { past: history.past.slice(0, -1), present, future: [history.present, ...history.future], group: null, at: 0 };
}

export function redo<T>(history: History<T>): History<T> {
  if (history.future.length === 0) return history;
  const [present, ...future] = history.future;
  return { past: [...history.past, history.present], present, future, group: null, at: 0 };
}
