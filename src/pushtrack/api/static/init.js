// pushtrack: render /openapi.json with Swagger UI (no network beyond this server).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#ui", deepLinking: true });
