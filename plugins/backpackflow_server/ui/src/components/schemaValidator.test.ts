import { describe, expect, it } from "vitest";
import { fits } from "./schemaValidator";

const root = {
  $defs: { Ref: { type: "object", required: ["name"], properties: { name: { type: "string" } } } },
};

describe("fits", () => {
  it("checks types, with integers counting as numbers", () => {
    expect(fits({ type: "number" }, 3, root)).toBe(true);
    expect(fits({ type: "integer" }, 3.5, root)).toBe(false);
    expect(fits({ type: ["string", "null"] }, null, root)).toBe(true);
    expect(fits({ type: ["string", "null"] }, 1, root)).toBe(false);
  });

  it("picks the anyOf option a value matches", () => {
    const rule = { anyOf: [{ type: "string" }, { type: "object" }] };
    expect(fits(rule.anyOf[0], "x == 1", root)).toBe(true);
    expect(fits(rule.anyOf[0], { "==": [1, 1] }, root)).toBe(false);
    expect(fits(rule, { "==": [1, 1] }, root)).toBe(true);
  });

  it("follows $ref and checks required and const", () => {
    expect(fits({ $ref: "#/$defs/Ref" }, { name: "a" }, root)).toBe(true);
    expect(fits({ $ref: "#/$defs/Ref" }, {}, root)).toBe(false);
    expect(fits({ properties: { kind: { const: "a" } } }, { kind: "b" }, root)).toBe(false);
  });
});
