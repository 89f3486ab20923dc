// An RJSF validator that needs no `eval`. @rjsf/validator-ajv8 compiles schemas into code with
// `new Function`, which the page's Content-Security-Policy (script-src 'self', no
// 'unsafe-eval') forbids. The service validates every flow anyway (and says where, by JSON
// path), so the form only needs what RJSF asks a validator while rendering: whether a value
// fits a schema, to pick the matching anyOf/oneOf option and if/then branch. This checks the
// structural keywords that decide that (type, const, enum, required, properties, items, $ref,
// allOf/anyOf/oneOf/not); the server's checks remain the authority.
import type { RJSFSchema, ValidationData, ValidatorType } from "@rjsf/utils";

type Schema = Record<string, unknown> | boolean;

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function resolve(ref: string, root: Schema): Schema | undefined {
  if (!ref.startsWith("#")) return undefined;
  let at: unknown = root;
  for (const raw of ref.slice(1).split("/").filter(Boolean)) {
    const step = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
    if (!at || typeof at !== "object") return undefined;
    at = (at as Record<string, unknown>)[step];
  }
  return at as Schema | undefined;
}

function equal(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Whether ``value`` fits ``schema`` as far as the structural keywords go. */
export function fits(schema: Schema | undefined, value: unknown, root: Schema, depth = 0): boolean {
  if (schema === undefined || schema === true) return true;
  if (schema === false) return false;
  if (depth > 32) return true;
  const s = schema;
  if (typeof s.$ref === "string") {
    const target = resolve(s.$ref, root);
    if (target !== undefined && !fits(target, value, root, depth + 1)) return false;
  }
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    const actual = typeOf(value);
    if (!types.some((t) => t === actual || (t === "number" && actual === "integer"))) return false;
  }
  if ("const" in s && !equal(s.const, value)) return false;
  if (Array.isArray(s.enum) && !s.enum.some((option) => equal(option, value))) return false;
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const object = value as Record<string, unknown>;
    if (Array.isArray(s.required) && !(s.required as string[]).every((key) => key in object)) return false;
    const properties = (s.properties ?? {}) as Record<string, Schema>;
    for (const [key, sub] of Object.entries(properties)) {
      if (key in object && !fits(sub, object[key], root, depth + 1)) return false;
    }
    if (s.additionalProperties === false && Object.keys(object).some((key) => !(key in properties))) return false;
  }
  if (Array.isArray(value) && s.items && typeof s.items === "object") {
    if (!value.every((item) => fits(s.items as Schema, item, root, depth + 1))) return false;
  }
  if (Array.isArray(s.allOf) && !s.allOf.every((sub) => fits(sub as Schema, value, root, depth + 1))) return false;
  if (Array.isArray(s.anyOf) && !s.anyOf.some((sub) => fits(sub as Schema, value, root, depth + 1))) return false;
  if (Array.isArray(s.oneOf) && s.oneOf.filter((sub) => fits(sub as Schema, value, root, depth + 1)).length !== 1) {
    return false;
  }
  if (s.not !== undefined && fits(s.not as Schema, value, root, depth + 1)) return false;
  return true;
}

/** The validator to pass to RJSF's `<Form validator={...}>` (with `noValidate`). */
export const schemaValidator: ValidatorType = {
  validateFormData(): ValidationData<unknown> {
    return { errors: [], errorSchema: {} };
  },
  isValid(schema: RJSFSchema, formData: unknown, rootSchema: RJSFSchema): boolean {
    return fits(schema as Schema, formData, rootSchema as Schema);
  },
  rawValidation() {
    return { errors: [] };
  },
};
