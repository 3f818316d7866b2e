"""The app for `flask` (found here by name) and gunicorn (`gunicorn wsgi:app`)."""

import os

from app import create_app

app = create_app(os.environ.get("FLASK_CONFIG"))
