// The JSON-Schema validator of the run view's forms (run inputs, a paused run's answer).
//
// RJSF's usual validator (@rjsf/validator-ajv8) compiles schemas into JavaScript with
// `new Function`, which the page's Content-Security-Policy forbids (no 'unsafe-eval'), so it
// would fail on submit. @cfworker/json-schema interprets schemas instead (made for Cloudflare
// Workers, where eval is off too) and knows drafts 4 to 2020-12: this adapts it to RJSF.
import { type OutputUnit, Validator } from "@cfworker/json-schema";
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

export function schemaErrors(schema: RJSFSchema, data: unknown): RJSFValidationError[] {
  const result = new Validator(schema as object, "2020-12", false).validate(data);
  return result.errors
    .filter((unit: OutputUnit) => !WRAPPERS.has(unit.keyword))
    .map((unit: OutputUnit) => {
      const segments = unit.instanceLocation.replace(/^#\/?/, "").split("/").filter(Boolean);
      const property = segments.length ? `.${segments.join(".")}` : "";
      const message = unit.error.replace(/^Instance does not match /, "does not match ");
      return { name: unit.keyword, message, property, schemaPath: unit.keywordLocation, stack: `${property || "."} ${message}`.trim(), params: {} };
    });
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
      const defs = rootSchema.$defs ?? rootSchema.definitions;
      return schemaErrors(defs ? { ...schema, $defs: rootSchema.$defs, definitions: rootSchema.definitions } : schema, formData).length === 0;
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
