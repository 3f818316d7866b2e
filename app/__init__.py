"""The application factory."""

import os

from flask import Flask

from app.config import load_config
from app.errors import register_error_handlers
from app.extensions import db, init_migrations, install_database_deadline, migrations_wanted
from app.main import main
from app.startup import prepare_database
from app.users import users


def create_app(config_name: str | None = None) -> Flask:
    """Build the app for `config_name` (default: FLASK_CONFIG), reading the environment now."""
    app = Flask(__name__, static_folder=None)  # an API: no static files
    app.config.from_mapping(load_config(config_name or os.environ.get("FLASK_CONFIG"), os.environ))

    db.init_app(app)
    install_database_deadline(app)
    if migrations_wanted():
        init_migrations(app)

    app.register_blueprint(main)
    app.register_blueprint(users)
    register_error_handlers(app)
    app.cli.add_command(prepare_database)
    return app
