"""The application factory."""

import os
from pathlib import Path

from flask import Flask

from app.config import load_config
from app.extensions import db, migrate

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(config_name: str | None = None) -> Flask:
    """Build the app for `config_name` (default: FLASK_CONFIG), reading the environment now."""
    app = Flask(__name__)
    app.config.from_mapping(load_config(config_name or os.environ.get("FLASK_CONFIG"), os.environ))

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))

    from app import models  # noqa: F401  (registers the models with the metadata)
    from app.main import main

    app.register_blueprint(main)
    return app
