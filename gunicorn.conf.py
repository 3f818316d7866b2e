"""gunicorn's settings for `inv serve` and the image; GUNICORN_CMD_ARGS adds any other option."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# One worker per core, at least 2.
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, os.cpu_count() or 1))
# A slow client holds a cheap greenlet, not a thread; database waits yield (app/health.py).
worker_class = "gevent"
# Connections per worker; past the database pool (15) they wait pool_timeout, then get a 503.
worker_connections = int(os.environ.get("GUNICORN_CONNECTIONS") or 200)

# A worker silent this long is killed and replaced.
timeout = 30
# Requests in flight at SIGTERM get this long; Compose gives the container 30 s before SIGKILL.
graceful_timeout = 25
keepalive = 5

accesslog = "-"
errorlog = "-"

# No control socket: its default, ~/.gunicorn, would be shared by every project of the user.
control_socket_disable = True
