"""The service's own endpoints: its root, its health, and the docs page's files."""

from apiflask import APIBlueprint
from flask import Response, current_app, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from app.extensions import db
from app.health import database_answers
from app.schemas import Health

main = APIBlueprint("main", __name__, tag="service")

# /docs loads Swagger UI from here, not from a CDN: the page works offline.
DOCS_ASSETS = {
    "SWAGGER_UI_BUNDLE_JS": "/docs/assets/swagger-ui-bundle.js",
    "SWAGGER_UI_STANDALONE_PRESET_JS": "/docs/assets/swagger-ui-standalone-preset.js",
    "SWAGGER_UI_CSS": "/docs/assets/swagger-ui.css",
    "DOCS_FAVICON": "/docs/assets/favicon-32x32.png",
    # The Swagger UI of swagger-ui-bundle (4.x) reads OpenAPI 3.0, not APIFlask's default 3.1.
    "OPENAPI_VERSION": "3.0.3",
}


@main.get("/")
@main.doc(
    operation_id="hello",
    summary="Hello, World!",
    responses={
        200: {
            "description": "A greeting",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def hello() -> Response:
    return Response("Hello, World!", mimetype="text/plain")


@main.get("/health")
@main.output(Health, description="The database answered in time")
@main.doc(
    operation_id="health",
    summary="Whether the database answers",
    responses={
        503: {
            "description": "The database did not answer in time",
            "content": {"application/json": {"schema": Health}},
        }
    },
)
def health():
    """200 when the database answers `SELECT 1` in time, 503 otherwise (no details leak)."""
    timeout = current_app.config["HEALTH_TIMEOUT"]
    if database_answers(db.engine.url, timeout):
        return {"status": "ok", "database": "ok"}
    return {"status": "unavailable", "database": "unavailable"}, 503


@main.get("/docs/assets/<path:name>")
@main.doc(hide=True)
def docs_asset(name: str):
    return send_from_directory(swagger_ui_path, name)
