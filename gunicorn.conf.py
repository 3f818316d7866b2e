"""gunicorn's settings, the one place for them: `inv serve` and the image both run
`gunicorn -c gunicorn.conf.py wsgi:app`. Environment variables tune them; gunicorn's own
GUNICORN_CMD_ARGS adds any other option."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# One worker per core (at least 2). gevent, not threads: a client that sends its headers and
# then its body slowly, or never, holds a cheap greenlet instead of one of a few threads
# (16 such clients stalled the threaded workers; tests/test_live_server.py). Database waits
# yield to other requests through psycopg2's wait callback (app/health.py).
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, os.cpu_count() or 1))
worker_class = "gevent"
# Connections each worker serves at once; beyond the database pool (15), requests wait for a
# connection (pool_timeout) and then get a 503.
worker_connections = int(os.environ.get("GUNICORN_CONNECTIONS") or 200)

# A worker silent this long is killed and replaced.
timeout = 30
# On SIGTERM (docker stop, a rolling update) requests in flight get this long to finish;
# the compose files give the container 30 s before SIGKILL.
graceful_timeout = 25
keepalive = 5

accesslog = "-"
errorlog = "-"

# No control socket: nothing here uses gunicornc, and its default path (~/.gunicorn) would be
# one socket shared by every project and server of the user.
control_socket_disable = True
