"""The app for `flask` (found here by name) and gunicorn (`gunicorn wsgi:app`)."""

import os

from app import create_app
from app.config import ConfigError

if __name__ == "__main__":
    # The database's password is the server's that inv starts: run the app through inv.
    raise SystemExit(
        "wsgi.py is what flask and gunicorn load: start the app with `inv dev` (or `inv serve`)"
    )

try:
    app = create_app(os.environ.get("FLASK_CONFIG"))
except ConfigError as error:
    # A setting the user fixes: one line, not a traceback (gunicorn and flask both show it).
    raise SystemExit(f"config error: {error}") from None
