#!/bin/sh
# The image's entry point: bring the database to head (exactly once however many replicas
# start: app/startup.py), then become the command (gunicorn; `flask run` in development).
# A failed migration exits here with one line in the log: the app never serves half-migrated.
set -e
flask prepare-database
exec "$@"
