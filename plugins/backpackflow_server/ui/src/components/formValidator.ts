// The one JSON-Schema validator of the page's RJSF forms: the editor's params forms, the run
// form of a flow's declared inputs, a paused run's answer.
//
// RJSF's usual validator (@rjsf/validator-ajv8) compiles schemas into JavaScript with
// `new Function`, which the page's Content-Security-Policy forbids (no 'unsafe-eval'), so it
// would fail on submit. @cfworker/json-schema interprets schemas instead (made for Cloudflare
// Workers, where eval is off too) and knows drafts 4 to 2020-12: this adapts it to RJSF, so
// every keyword is checked (minimum, pattern, formats...) and each error lands on the field it
// is about (a missing required property on that property, as Ajv's adapter does).
import { type OutputUnit, type Schema, Validator } from "@cfworker/json-schema";
import {
  createErrorHandler,
  type CustomValidator,
  type ErrorTransformer,
  type RJSFSchema,
  type RJSFValidationError,
  toErrorSchema,
  type UiSchema,
  unwrapErrorHandler,
  type ValidationData,
  validationDataMerge,
  type ValidatorType,
} from "@rjsf/utils";

/** Keywords that only say "a sub-schema failed": the sub-schema's own error says what. */
const WRAPPERS = new Set(["properties", "items", "prefixItems", "allOf", "$ref", "additionalProperties", "dependentSchemas", "if", "then", "else"]);
const REQUIRED = /^Instance does not have required property "(.*)"\.$/;

/** Validators by schema object: RJSF asks `isValid` many times per render with the same
 * schemas (to pick anyOf options), and building a Validator dereferences the whole schema. */
const cache = new WeakMap<object, Validator>();

function validatorFor(schema: RJSFSchema): Validator {
  let validator = cache.get(schema);
  if (!validator) {
    validator = new Validator(schema as Schema, "2020-12", false);
    cache.set(schema, validator);
  }
  return validator;
}

function pathOf(instanceLocation: string): string[] {
  return instanceLocation
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((raw) => decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~"));
}

/** The errors of ``data`` against ``schema``, each with the RJSF property path of its field. */
export function schemaErrors(schema: RJSFSchema, data: unknown): RJSFValidationError[] {
  const result = validatorFor(schema).validate(data);
  return result.errors
    .filter((unit: OutputUnit) => !WRAPPERS.has(unit.keyword))
    .map((unit: OutputUnit) => {
      const segments = pathOf(unit.instanceLocation);
      let message = unit.error.replace(/^Instance does not match /, "does not match ");
      const missing = unit.keyword === "required" ? REQUIRED.exec(unit.error) : null;
      if (missing) {
        // on the missing field itself, where RJSF shows a field's errors
        segments.push(missing[1]);
        message = "is a required property";
      }
      const property = segments.length ? `.${segments.join(".")}` : "";
      return { name: unit.keyword, message, property, schemaPath: unit.keywordLocation, stack: `${property || "."} ${message}`.trim(), params: missing ? { missingProperty: missing[1] } : {} };
    });
}

/** Sub-schemas with their root's definitions, by root then sub-schema (kept as long as both). */
const scoped = new WeakMap<object, WeakMap<object, RJSFSchema>>();

function withDefinitions(schema: RJSFSchema, rootSchema: RJSFSchema): RJSFSchema {
  // a sub-schema RJSF asks about may $ref the root's definitions
  if (schema === rootSchema || (!rootSchema.$defs && !rootSchema.definitions)) return schema;
  let byRoot = scoped.get(rootSchema);
  if (!byRoot) scoped.set(rootSchema, (byRoot = new WeakMap()));
  let joined = byRoot.get(schema);
  if (!joined) byRoot.set(schema, (joined = { ...schema, $defs: rootSchema.$defs, definitions: rootSchema.definitions }));
  return joined;
}

export const formValidator: ValidatorType = {
  validateFormData(
    formData: unknown,
    schema: RJSFSchema,
    customValidate?: CustomValidator,
    transformErrors?: ErrorTransformer,
    uiSchema?: UiSchema,
  ): ValidationData<unknown> {
    let errors = schemaErrors(schema, formData);
    if (transformErrors) errors = transformErrors(errors, uiSchema);
    const data: ValidationData<unknown> = { errors, errorSchema: toErrorSchema(errors) };
    if (!customValidate) return data;
    const handler = customValidate(formData, createErrorHandler(formData), uiSchema);
    return validationDataMerge(data, unwrapErrorHandler(handler));
  },
  isValid(schema: RJSFSchema, formData: unknown, rootSchema: RJSFSchema): boolean {
    try {
      return validatorFor(withDefinitions(schema, rootSchema)).validate(formData).valid;
    } catch {
      return false;
    }
  },
  rawValidation<Result = unknown>(schema: RJSFSchema, formData?: unknown): { errors?: Result[]; validationError?: Error } {
    try {
      return { errors: schemaErrors(schema, formData) as Result[] };
    } catch (error) {
      return { validationError: error as Error };
    }
  },
};
