import { describe, expect, it } from "vitest";
import { commit, redo, start, undo } from "./history";

describe("undo and redo", () => {
  it("steps back and forth, and a new change drops the redo steps", () => {
    let history = start("a");
    history = commit(history, "b", null, 0);
    history = commit(history, "c", null, 10);
    history = undo(history);
    expect(history.present).toBe("b");
    history = undo(history);
    expect(history.present).toBe("a");
    expect(undo(history)).toBe(history);
    history = redo(history);
    expect(history.present).toBe("b");
    history = commit(history, "d", null, 20);
    expect(history.future).toEqual([]);
    expect(redo(history)).toBe(history);
  });

  it("makes quick changes of one thing one step", () => {
    let history = start("");
    history = commit(history, "h", "prompt", 0);
    history = commit(history, "hi", "prompt", 300);
    history = commit(history, "hi!", "prompt", 600);
    history = commit(history, "x", "name", 700);
    expect(undo(history).present).toBe("hi!");
    expect(undo(undo(history)).present).toBe("");
    history = commit(history, "later", "name", 5000);
    expect(undo(history).present).toBe("x");
  });
});
