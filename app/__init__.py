"""The application factory."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apiflask import APIFlask

TOO_LONG = "The request line is over 4,094 bytes (gunicorn's limit)"


def project_name_and_version() -> tuple[str, str]:
    """The API's title and version: the project's, from [project] in pyproject.toml."""
    with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as settings:
        project = tomllib.load(settings)["project"]
    return project["name"], project["version"]


def create_app(config_name: str | None = None) -> APIFlask:
    """Build the app for `config_name` (default: FLASK_CONFIG), reading the environment now."""
    # Imported here: the tasks import app.database, which must not cost Flask or SQLAlchemy.
    from werkzeug.middleware.proxy_fix import ProxyFix

    from app.config import load_config
    from app.errors import APIFlaskWithDebugger, json_bodies_only, register_error_handlers
    from app.extensions import db, init_migrations, install_database_deadline, migrations_wanted
    from app.main import DOCS_ASSETS, main
    from app.schemas import Error
    from app.startup import prepare_database
    from app.users import users

    # An API: no static files; its description at /openapi.json, its docs page at /docs.
    name, version = project_name_and_version()
    app = APIFlaskWithDebugger(
        __name__, title=name, version=version, static_folder=None, docs_path="/docs"
    )
    app.config.from_mapping(load_config(config_name or os.environ.get("FLASK_CONFIG"), os.environ))
    app.config.update(
        DOCS_ASSETS,
        VALIDATION_ERROR_STATUS_CODE=400,
        VALIDATION_ERROR_DESCRIPTION="Malformed JSON, or a missing or invalid field",
        HTTP_ERROR_SCHEMA=Error,
        VALIDATION_ERROR_SCHEMA=Error,
        # OPTIONS is no operation of the API: a 405 in its envelope, not Flask's empty 200.
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )

    if hops := app.config["PROXY_HOPS"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    db.init_app(app)
    install_database_deadline(app)
    if migrations_wanted():
        init_migrations(app)

    @app.spec_processor
    def as_served(spec: dict) -> dict:
        for item in spec["paths"].values():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                # APIFlask leaves requestBody optional; a request without one is refused (415).
                if "requestBody" in operation:
                    operation["requestBody"]["required"] = True
                # gunicorn answers it itself, before the app: a page of its own, not JSON.
                operation["responses"].setdefault("414", {"description": TOO_LONG})
        return spec

    app.before_request(json_bodies_only)
    app.register_blueprint(main)
    app.register_blueprint(users)
    register_error_handlers(app)
    app.cli.add_command(prepare_database)
    return app
