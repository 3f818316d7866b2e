"""The JSON API under load (wrk), gunicorn beside the Flask development server and a psycopg2 loop.

python benchmarks/load.py [--seconds 30] [--connections 16] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import runpy
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from invoke import Exit
from measuring import BenchmarkError, load_testing_env, markdown_table, one_line_errors, progress
from psycopg2.extensions import connection as Connection

from steps import PROJECT, app_commands, commands, environment, postgres, servers
from steps.templates import copy_of, server_connection, template_at_head

SEED_USERS = 5000
WRK_THREADS = 2  # one per core: wrk shares the machine with the app and the database
FLOOR_THREADS = 4
QUERY = "SELECT id, email FROM users WHERE id = %s"
RATIO_GOAL = 3.0
SOCKET_ERRORS = ("connect", "read", "write", "timeout")

# Each wrk thread runs its own Lua state; setup() and done() run in the main one, which reads
# the threads' counters with thread:get(). done() prints the totals as `@@ name value` lines.
LUA_COMMON = """
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local function report(summary, latency, counters)
  local e = summary.errors
  local values = {requests = summary.requests, duration_us = summary.duration,
    p50_us = latency:percentile(50), p99_us = latency:percentile(99), max_us = latency.max,
    non_2xx = e.status, connect = e.connect, read = e.read, write = e.write, timeout = e.timeout}
  for _, name in ipairs(counters) do
    values[name] = 0
    for _, thread in ipairs(threads) do
      values[name] = values[name] + thread:get(name)
    end
  end
  for name, value in pairs(values) do
    print(string.format("@@ %s %d", name, value))
  end
end
"""

# After LUA_COMMON. Arguments: the lowest and highest user id.
LUA_GET_USER = """
function init(args)
  low, high = tonumber(args[1]), tonumber(args[2])
  math.randomseed(os.time() * 100 + id)
end

function request()
  return wrk.format("GET", "/users/" .. math.random(low, high))
end

function done(summary, latency, requests)
  report(summary, latency, {})
end
"""

# After LUA_COMMON. Arguments: a token unique to the run. Emails are <token>-<thread>-<n>@example.com.
LUA_POST_USER = """
local headers = {["Content-Type"] = "application/json"}

function init(args)
  prefix = args[1] .. "-" .. id .. "-"
  sent, created, unconfirmed = 0, 0, {}  -- unconfirmed: emails sent, no 201 seen yet
end

function request()
  sent = sent + 1
  local email = prefix .. sent .. "@example.com"
  unconfirmed[email] = true
  return wrk.format("POST", "/users", headers, '{"email": "' .. email .. '"}')
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
    unconfirmed[body:match('"email":%s*"([^"]+)"')] = nil
  end
end

function done(summary, latency, requests)
  report(summary, latency, {"sent", "created"})
  for _, thread in ipairs(threads) do
    for email in pairs(thread:get("unconfirmed")) do
      print("@@ unconfirmed " .. email)
    end
  end
end
"""
SCRIPTS = {"get_user": LUA_GET_USER, "post_user": LUA_POST_USER}


@dataclass
class WrkResult:
    """What a wrk script's done() printed: totals by name, and the unconfirmed emails."""

    totals: dict[str, int]
    unconfirmed: list[str] = field(default_factory=list)

    @property
    def timing(self) -> Timing:
        rate = self.totals["requests"] / (self.totals["duration_us"] / 1e6)
        return Timing(rate, self.totals["p50_us"] / 1e6, self.totals["p99_us"] / 1e6)

    @property
    def socket_errors(self) -> int:
        return sum(self.totals[name] for name in SOCKET_ERRORS)

    def errors(self) -> str:
        """Error answers, then socket errors by kind (an answer after 2 s is a `timeout`)."""
        kinds = [f"{self.totals[name]} {name}" for name in SOCKET_ERRORS if self.totals[name]]
        socket = f"{self.socket_errors} socket" + (f" ({', '.join(kinds)})" if kinds else "")
        return f"{self.totals['non_2xx']} non-2xx, {socket}"


class Timing(NamedTuple):
    """A rate and its latency percentiles, in seconds."""

    rate: float
    p50: float
    p99: float


@dataclass
class Load:
    """What the runs share: the database, the seeded users' ids, wrk's settings, a folder."""

    env: environment.Env
    host: str
    port: int
    database: str
    seconds: int
    warm_up: int
    connections: int
    folder: Path
    ids: tuple[int, int] = (0, 0)

    def connect(self) -> Connection:
        return postgres.connect(self.env, self.host, self.port, dbname=self.database)

    def query(self, sql: str, *params: object) -> tuple:
        """The first row of `sql`, committed."""
        with contextlib.closing(self.connect()) as connection, connection.cursor() as cursor:
            connection.autocommit = True
            cursor.execute(sql, params)
            return cursor.fetchone()

    def seed_users(self) -> None:
        """SEED_USERS users in one statement; GET /users/<id> asks for their ids."""
        self.ids = self.query(
            "WITH seeded AS (INSERT INTO users (email, email_folded)"
            " SELECT 'seed-' || n || '@example.com', 'seed-' || n || '@example.com'"
            " FROM generate_series(1, %s) AS n RETURNING id) SELECT min(id), max(id) FROM seeded",
            SEED_USERS,
        )

    def wrk(self, script: str, port: int, seconds: int, *args: object) -> WrkResult:
        """wrk with one of SCRIPTS against the server on `port`; `args` go to the script."""
        path = self.folder / f"{script}.lua"
        path.write_text(LUA_COMMON + SCRIPTS[script])
        command = [
            "wrk", "--threads", str(min(WRK_THREADS, self.connections)),
            "--connections", str(self.connections), "--duration", f"{seconds}s",
            "--script", str(path), f"http://{postgres.LOOPBACK}:{port}", "--", *map(str, args),
        ]  # fmt: skip
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode != 0:
            raise BenchmarkError(f"wrk exited with {finished.returncode}: {finished.stderr}")
        result = WrkResult({})
        for name, value in re.findall(r"^@@ (\w+) (\S+)$", finished.stdout, re.MULTILINE):
            if name == "unconfirmed":
                result.unconfirmed.append(value)
            else:
                result.totals[name] = int(value)
        if "requests" not in result.totals:
            raise BenchmarkError(f"wrk printed no totals: {finished.stdout.strip()[-300:]}")
        return result

    def get_users(self, port: int) -> WrkResult:
        """GET /users/<id>, after a warm-up run that opens the server's connections."""
        self.wrk("get_user", port, self.warm_up, *self.ids)
        return self.wrk("get_user", port, self.seconds, *self.ids)

    def floor(self, threads: int) -> Timing:
        """Queries/s and latency of `threads` loops of QUERY, each on its own connection."""
        stop = threading.Event()

        def loop() -> list[float]:
            pick, taken = random.Random(), []
            with contextlib.closing(self.connect()) as connection:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    while not stop.is_set():
                        start = time.perf_counter()
                        cursor.execute(QUERY, (pick.randint(*self.ids),))
                        cursor.fetchone()
                        taken.append(time.perf_counter() - start)
            return taken

        with ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            loops = [pool.submit(loop) for _ in range(threads)]
            try:
                time.sleep(self.seconds)
            finally:
                stop.set()
            latencies = [latency for done in loops for latency in done.result()]
        elapsed = time.perf_counter() - start
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        return Timing(len(latencies) / elapsed, cuts[49], cuts[98])


@contextlib.contextmanager
def test_database(env: environment.Env) -> Iterator[tuple[str, int, str]]:
    """The database a pytest process of `inv test` gets, exported as APPLICATION_DB."""
    with servers.database_for_tests(env) as (host, port):
        with server_connection(env, host, port) as server:
            template = template_at_head(env, server)
        with copy_of(env, host, port, template) as name:
            environment.export(APPLICATION_DB=name)
            yield host, port, name


@contextlib.contextmanager
def serving(command: list[str], log: Path, port: int) -> Iterator[subprocess.Popen]:
    """A server started with `command`, once /health answers; it finishes what is in flight."""
    with commands.background(command, log) as process:
        try:
            app_commands.wait_for_http(f"http://{postgres.LOOPBACK}:{port}/health", process)
        except Exit as error:
            tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
            raise BenchmarkError(f"{error.message}: {tail}") from None
        yield process


class Measured(NamedTuple):
    """Every measurement of a run."""

    workers: str
    floor: dict[int, Timing]
    gunicorn: WrkResult
    post: WrkResult
    dev: WrkResult
    rows_added: int
    in_flight: int  # rows added by requests wrk sent but saw no 201 for: in flight at its stop

    @property
    def lost(self) -> int:
        return self.post.totals["created"] - (self.rows_added - self.in_flight)


def measure(load: Load) -> Measured:
    settings = runpy.run_path(str(PROJECT / "gunicorn.conf.py"))
    workers = f"{settings['workers']} {settings['worker_class']} workers"
    timings = {}
    for threads in (1, FLOOR_THREADS):
        progress(f"floor: the query in a psycopg2 loop on {threads} thread(s), {load.seconds} s")
        timings[threads] = load.floor(threads)
    port = postgres.free_port()
    with serving(app_commands.gunicorn_command(port), load.folder / "gunicorn.log", port):
        progress(f"GET /users/<id> under gunicorn ({workers}), {load.seconds} s")
        gunicorn = load.get_users(port)
        progress(f"POST /users under gunicorn, {load.seconds} s")
        post = load.wrk("post_user", port, load.seconds, secrets.token_hex(4))
    # `post` is complete now: gunicorn finished the requests in flight as it stopped.
    environment.export(FLASK_DEBUG=0)
    port = postgres.free_port()
    flask_run = [sys.executable, "-m", "flask", "run", "--port", str(port)]
    with serving(flask_run, load.folder / "flask.log", port):
        progress(f"GET /users/<id> under the Flask development server, {load.seconds} s")
        dev = load.get_users(port)
    total, in_flight = load.query(
        "SELECT count(*), count(*) FILTER (WHERE email = ANY(%s)) FROM users", post.unconfirmed
    )
    return Measured(workers, timings, gunicorn, post, dev, total - SEED_USERS, in_flight)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def timing_row(measurement: str, unit: str, measured: Timing, errors: str) -> tuple[str, ...]:
    return measurement, f"{measured.rate:,.0f} {unit}", ms(measured.p50), ms(measured.p99), errors


def report(m: Measured, load: Load) -> str:
    """The setup, the table and the writes, in Markdown."""
    gunicorn, dev = m.gunicorn.timing, m.dev.timing
    ratio = gunicorn.rate / dev.rate
    goal = f"goal >= {RATIO_GOAL:.0f}x: {'met' if ratio >= RATIO_GOAL else 'NOT met'}"
    table = markdown_table(
        ("Measurement", "Rate", "p50", "p99", "Errors"),
        [
            timing_row(f"GET /users/<id>, gunicorn {m.workers}", "req/s", gunicorn, m.gunicorn.errors()),
            timing_row("GET /users/<id>, Flask development server (threaded)", "req/s", dev, m.dev.errors()),
            ("Ratio gunicorn / development server (latency: the reverse)", f"{ratio:.2f}x",
             f"{dev.p50 / gunicorn.p50:.2f}x", f"{dev.p99 / gunicorn.p99:.2f}x", goal),
            *(timing_row(f"Floor: `{QUERY}`, psycopg2, {n} thread(s)", "queries/s", t, "-")
              for n, t in m.floor.items()),
            timing_row(f"POST /users (fresh emails), gunicorn {m.workers}", "req/s", m.post.timing,
                       m.post.errors()),
        ],
    )  # fmt: skip
    setup = (
        f"{os.cpu_count()} cores; wrk, {min(WRK_THREADS, load.connections)} threads, "
        f"{load.connections} keep-alive connections, {load.seconds} s per run (GET runs after a "
        f"{load.warm_up} s warm-up); the tests' PostgreSQL ({servers.provider_for(load.env).label}); "
        f"{SEED_USERS:,} users seeded."
    )
    t = m.post.totals
    writes = (
        f"POST /users for the whole run: {t['requests']:,} answered, {t['created']:,} of them "
        f"201; {m.post.errors()}; {t['sent'] - t['requests']:,} unanswered when wrk stopped. Rows added: "
        f"{m.rows_added:,}, of which {m.in_flight:,} for requests in flight at the stop and "
        f"{m.rows_added - m.in_flight:,} for the 201s: {m.lost:,} writes lost."
    )
    return "\n\n".join([setup, table, writes])


def failures(m: Measured) -> list[str]:
    """What must not happen: error answers, socket errors, lost or unexplained writes."""
    results = {"gunicorn GET": m.gunicorn, "dev server GET": m.dev, "POST": m.post}
    problems = [
        f"{name}: {result.errors()}, slowest answer {ms(result.totals['max_us'] / 1e6)}"
        for name, result in results.items()
        if result.totals["non_2xx"] or result.socket_errors
    ]
    not_201 = m.post.totals["requests"] - m.post.totals["created"]
    if not_201:
        problems.append(f"POST: {not_201} answers were not 201")
    if m.lost:
        problems.append(f"POST: {m.lost} rows fewer than 201s (negative: more)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="each measured run (default: 30)")
    parser.add_argument("--connections", type=int, default=16, help="wrk's (default: 16)")
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 s warm-ups")
    args = parser.parse_args()
    if args.seconds < 1 or args.connections < 1:
        parser.error("--seconds and --connections must be at least 1")
    seconds, warm_up = (2, 1) if args.quick else (args.seconds, 2)
    with one_line_errors():
        if not shutil.which("wrk"):
            raise BenchmarkError("wrk not found on PATH: apt-get install wrk")
        chosen = {"DB_SERVER": os.environ["DB_SERVER"]} if "DB_SERVER" in os.environ else {}
        env = load_testing_env(**chosen)
        with (
            tempfile.TemporaryDirectory(prefix="load-") as folder,
            test_database(env) as (host, port, database),
        ):
            load = Load(env, host, port, database, seconds, warm_up, args.connections, Path(folder))
            load.seed_users()
            measured = measure(load)
    print(report(measured, load))
    problems = failures(measured)
    for problem in problems:
        progress(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
