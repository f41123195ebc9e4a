"use strict";
// The interactive API reference, built from the registry's own /openapi.json.
// Swagger UI comes from the registry too (swagger-ui-py's files): nothing is
// loaded from elsewhere. No validator badge (it would call out to
// validator.swagger.io), and the token entered under "Authorize" stays in
// this page's memory only (persistAuthorization is off).
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
    tryItOutEnabled: false,
    displayRequestDuration: true,
  });
});
