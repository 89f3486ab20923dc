import { describe, expect, it } from "vitest";
import { chatMessages } from "../runs/logic";
import { promptText, signed } from "./compare";

describe("run diff helpers", () => {
  it("signs deltas and prints prompts", () => {
    expect(signed(3)).toBe("+3");
    expect(signed(-2)).toBe("-2");
    expect(signed(0)).toBe("0");
    expect(promptText([{ role: "system", content: "Be brief" }, { role: "user", content: "Hi" }], chatMessages)).toBe("system: Be brief\n\nuser: Hi");
    expect(promptText({ text: "x" }, chatMessages)).toBe('{\n  "text": "x"\n}');
  });
});
