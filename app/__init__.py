"""The application factory."""

import os

from apiflask import APIFlask

from app.config import load_config
from app.errors import APIFlaskWithDebugger, json_bodies_only, register_error_handlers
from app.extensions import db, init_migrations, install_database_deadline, migrations_wanted
from app.main import DOCS_ASSETS, main
from app.schemas import Error
from app.startup import prepare_database
from app.users import users


def create_app(config_name: str | None = None) -> APIFlask:
    """Build the app for `config_name` (default: FLASK_CONFIG), reading the environment now."""
    # An API: no static files; its description at /openapi.json, its docs page at /docs.
    app = APIFlaskWithDebugger(
        __name__, title="Users API", version="1.0", static_folder=None, docs_path="/docs"
    )
    app.config.from_mapping(load_config(config_name or os.environ.get("FLASK_CONFIG"), os.environ))
    app.config.update(
        DOCS_ASSETS,
        VALIDATION_ERROR_STATUS_CODE=400,
        VALIDATION_ERROR_DESCRIPTION="Malformed JSON, or a missing or invalid field",
        HTTP_ERROR_SCHEMA=Error,
        VALIDATION_ERROR_SCHEMA=Error,
    )

    db.init_app(app)
    install_database_deadline(app)
    if migrations_wanted():
        init_migrations(app)

    @app.spec_processor
    def bodies_are_required(spec: dict) -> dict:
        # APIFlask leaves requestBody optional; a request without one is refused (415).
        for item in spec["paths"].values():
            for operation in item.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    operation["requestBody"]["required"] = True
        return spec

    app.before_request(json_bodies_only)
    app.register_blueprint(main)
    app.register_blueprint(users)
    register_error_handlers(app)
    app.cli.add_command(prepare_database)
    return app
