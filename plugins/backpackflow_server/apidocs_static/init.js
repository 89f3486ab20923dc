// Starts Swagger UI on the service's own spec. A file, not an inline script, so the page's
// Content-Security-Policy can forbid inline scripts; validatorUrl null: Swagger UI would
// otherwise send the spec to an online validator (and show its badge).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
