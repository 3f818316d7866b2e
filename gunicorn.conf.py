"""gunicorn's settings, the one place for them: `inv serve` and the image both run
`gunicorn -c gunicorn.conf.py wsgi:app`. Environment variables tune them; gunicorn's own
GUNICORN_CMD_ARGS adds any other option."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# One threaded worker per core (at least 2) beat gunicorn's usual 2 x cores + 1 on this
# app (benchmarks/load.py: 748 against 431-595 req/s on 2 cores, p99 49 against 113 ms).
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, os.cpu_count() or 1))
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
worker_class = "gthread"

# A worker silent this long is killed and replaced.
timeout = 30
# On SIGTERM (docker stop, a rolling update) requests in flight get this long to finish;
# the compose files give the container 30 s before SIGKILL.
graceful_timeout = 25
keepalive = 5

accesslog = "-"
errorlog = "-"
