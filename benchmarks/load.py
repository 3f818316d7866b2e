"""Measure the JSON API under load, as Markdown tables for the README.

1. `GET /users/<id>` (random ids among a few thousand seeded users) under wrk, keep-alive:
   a. the app under gunicorn, started as `inv serve` starts it (app_commands.gunicorn_command,
      WEB_CONCURRENCY gevent workers, their default unless set);
   b. the Flask development server (`python -m flask run`, werkzeug threaded, FLASK_DEBUG=0);
   c. the floor: the app's query, `SELECT id, email FROM users WHERE id = %s`, in a bare
      psycopg2 loop in this process (autocommit, one round trip a query), on one thread
      and on FLOOR_THREADS threads with a connection each.
   Requests/s, p50 and p99 latency, errors (non-2xx answers, socket errors), and the ratio
   gunicorn / development server (the goal is at least 3x).
2. `POST /users` with a fresh email per request for the whole run, under gunicorn: requests,
   201s, 5xx (must be none), and the rows added to `users`, which must account for every
   201. wrk stops in the middle of the requests in flight; the emails of those it sent
   without seeing a 201 are looked up, so the check is exact: rows added = 201s + those of
   the unanswered requests the server had committed.

Everything runs on this machine: wrk (`apt-get install wrk`), the app, and a throwaway
PostgreSQL of the testing environment started as `inv test` starts it (DB_SERVER as
there: env/testing.env, overridden by the environment). Run it from the project root with
the venv active; it takes about five times --seconds, plus start-up:

    python benchmarks/load.py [--seconds 30] [--connections 16]

It refuses to run while a warm testing server (`APPLICATION_CONFIG=testing inv db.up`) is
up, since it would write into that one. What it starts (database server, gunicorn, Flask)
is stopped on the way out, Ctrl-C and SIGTERM included. It exits with 1 when an answer
was an error or a write went missing. pytest does not collect this file.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from invoke import Exit
from psycopg2.extensions import connection as Connection

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from server_overhead import BenchmarkError, exits_on_failure, markdown_table  # noqa: E402  (the sibling script)

import steps  # noqa: E402
from steps import app_commands, commands, environment, postgres, servers  # noqa: E402

SEED_USERS = 5000
WRK_THREADS = 2  # one per core; wrk shares the machine with the app and the database
WARM_UP_SECONDS = 2
FLOOR_THREADS = 4
QUERY = "SELECT id, email FROM users WHERE id = %s"
RATIO_GOAL = 3.0
SOCKET_ERRORS = ("connect", "read", "write", "timeout")
# What load_env would take from the process environment over env/testing.env: removed, so
# that the servers measured get the testing environment, as under `inv test`.
LOADED_PREFIXES = ("POSTGRES_", "APPLICATION_", "FLASK_")

# --------------------------------------------------------------------------- wrk scripts

# Shared by both scripts: number the threads, and print the totals as `@@ name value`
# lines. Each wrk thread runs its own Lua state: setup() and done() run in the main one,
# which reads the threads' counters with thread:get() (tables are copied too).
LUA_COMMON = """
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local function report(summary, latency, counters)
  local errors = summary.errors
  local values = {
    requests = summary.requests, duration_us = summary.duration,
    p50_us = latency:percentile(50), p99_us = latency:percentile(99), max_us = latency.max,
    non_2xx = errors.status, connect = errors.connect, read = errors.read,
    write = errors.write, timeout = errors.timeout,
  }
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

# Arguments: the lowest and highest user id.
LUA_GET_USER = (
    LUA_COMMON
    + """
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
)

# Arguments: a token unique to the run. Emails are <token>-<thread>-<n>@example.com.
LUA_POST_USER = (
    LUA_COMMON
    + """
local headers = {["Content-Type"] = "application/json"}

function init(args)
  prefix = args[1] .. "-" .. id .. "-"
  sent, created, server_errors, other = 0, 0, 0, 0
  unconfirmed = {}  -- emails sent that no 201 has confirmed yet
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
  elseif status >= 500 then
    server_errors = server_errors + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  report(summary, latency, {"sent", "created", "server_errors", "other"})
  for _, thread in ipairs(threads) do
    for email in pairs(thread:get("unconfirmed")) do
      print("@@ unconfirmed " .. email)
    end
  end
end
"""
)


@dataclass
class WrkResult:
    """What a wrk script's done() printed: totals by name, and the unconfirmed emails."""

    totals: dict[str, int]
    unconfirmed: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.totals["requests"] / (self.totals["duration_us"] / 1e6)

    @property
    def socket_errors(self) -> int:
        return sum(self.totals[name] for name in SOCKET_ERRORS)

    def describe_socket_errors(self) -> str:
        """`N socket`, with the kinds that occurred; wrk counts an answer slower than its
        timeout (2 s) as a `timeout` too."""
        kinds = [f"{self.totals[name]} {name}" for name in SOCKET_ERRORS if self.totals[name]]
        return f"{self.socket_errors} socket" + (f" ({', '.join(kinds)})" if kinds else "")


class Timing(NamedTuple):
    """A rate and its latency percentiles, in seconds."""

    rate: float
    p50: float
    p99: float


class WriteCheck(NamedTuple):
    """The POST run's answers and what the database holds afterwards."""

    result: WrkResult
    rows_added: int
    unconfirmed_committed: int

    @property
    def rows_of_201s(self) -> int:
        return self.rows_added - self.unconfirmed_committed

    @property
    def lost(self) -> int:
        return self.result.totals["created"] - self.rows_of_201s


class Row(NamedTuple):
    measurement: str
    rate: str
    p50: str
    p99: str
    errors: str


# --------------------------------------------------------------------------- environment, safety


def progress(message: str) -> None:
    print(f"load_benchmark: {message}", file=sys.stderr, flush=True)


def require_wrk() -> str:
    """wrk's version line; a one-line error saying how to install it when it is missing."""
    if not shutil.which("wrk"):
        raise BenchmarkError("wrk not found on PATH: apt-get install wrk")
    banner = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return banner.split("[")[0].strip() or "wrk (version unknown)"


def scrub_environment() -> None:
    """Remove the variables load_env would take over env/testing.env."""
    for name in [name for name in os.environ if name.startswith(LOADED_PREFIXES)]:
        del os.environ[name]


def throwaway_servers(env: environment.Env) -> postgres.Servers:
    """Who will run the throwaway server; refused when a warm testing server runs, since
    `database_server` would use that one and this benchmark would write into it."""
    chosen = servers.db_servers(env)
    if chosen.running() is not None:
        raise BenchmarkError(
            "a warm testing server is running: stop it first (`APPLICATION_CONFIG=testing inv db.down`)"
        )
    return chosen


@contextlib.contextmanager
def throwaway_database(env: environment.Env) -> Iterator[tuple[str, int]]:
    """A throwaway server with the test database at head, as `inv test` has it."""
    with servers.database_server(env, throwaway=True) as (host, port):
        postgres.create_database(env, host, port)
        app_commands.migrate_to_head()
        yield host, port


def connect(env: environment.Env, host: str, port: int) -> Connection:
    """A connection to the app's database."""
    return postgres.connect(env, host, port, dbname=env["APPLICATION_DB"])


def seed_users(env: environment.Env, host: str, port: int) -> tuple[int, int]:
    """Insert SEED_USERS users in one statement; their lowest and highest id."""
    connection = connect(env, host, port)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO users (email) SELECT 'seed-' || n || '@example.com'"
                " FROM generate_series(1, %s) AS n",
                (SEED_USERS,),
            )
            cursor.execute("SELECT min(id), max(id) FROM users")
            low, high = cursor.fetchone()
    finally:
        connection.close()
    return low, high


def count_rows(env: environment.Env, host: str, port: int, emails: list[str]) -> tuple[int, int]:
    """The number of users, and how many of them have one of `emails`."""
    connection = connect(env, host, port)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), count(*) FILTER (WHERE email = ANY(%s)) FROM users", (emails,)
            )
            total, matching = cursor.fetchone()
    finally:
        connection.close()
    return total, matching


# --------------------------------------------------------------------------- servers


def tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " / ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def serving(args: list[str], log: Path, port: int) -> Iterator[subprocess.Popen]:
    """A server started with `args` in the project root, its output in `log`, once /health
    answers on `port`; stopped on the way out, after it finishes the requests in flight."""
    with commands.background(args, log) as process:
        try:
            app_commands.wait_for_http(f"{base_url(port)}/health", process)
        except Exit as error:
            raise BenchmarkError(f"{error.message}: {tail(log)}") from None
        yield process


def base_url(port: int) -> str:
    return f"http://{postgres.LOOPBACK}:{port}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_cpu(master: subprocess.Popen) -> dict[int, float]:
    """CPU seconds used so far by each worker (child process) of a gunicorn master."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return {int(pid): cpu_seconds(int(pid)) for pid in children}


def gunicorn_settings() -> str:
    """Workers and their kind, as gunicorn.conf.py sets them in this environment."""
    settings = runpy.run_path(str(steps.PROJECT / "gunicorn.conf.py"))
    return f"{settings['workers']} {settings['worker_class']} workers"


def dev_server_command(port: int) -> list[str]:
    """The Flask development server; FLASK_DEBUG=0 is exported by the caller."""
    return [sys.executable, "-m", "flask", "run", "--port", str(port)]


# --------------------------------------------------------------------------- wrk


def write_script(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def parse_wrk(output: str) -> WrkResult:
    """The `@@ name value` lines a done() printed."""
    result = WrkResult({})
    for name, value in re.findall(r"^@@ (\w+) (\S+)$", output, re.MULTILINE):
        if name == "unconfirmed":
            result.unconfirmed.append(value)
        else:
            result.totals[name] = int(value)
    if "requests" not in result.totals:
        raise BenchmarkError(f"wrk printed no totals: {output.strip()[-300:]}")
    return result


def run_wrk(script: Path, url: str, seconds: int, connections: int, *args: object) -> WrkResult:
    """wrk with `script` against `url` for `seconds`, keep-alive; `args` go to the script."""
    command = [
        "wrk", "--threads", str(min(WRK_THREADS, connections)), "--connections", str(connections),
        "--duration", f"{seconds}s", "--script", str(script), url, "--", *map(str, args),
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise BenchmarkError(f"wrk exited with {finished.returncode}: {finished.stderr.strip()}")
    return parse_wrk(finished.stdout)


def timing(result: WrkResult) -> Timing:
    totals = result.totals
    return Timing(result.rate, totals["p50_us"] / 1e6, totals["p99_us"] / 1e6)


# --------------------------------------------------------------------------- the floor


def query_loop(
    connect_once: Callable[[], Connection], ids: tuple[int, int], stop: threading.Event
) -> list[float]:
    """Run QUERY with random ids until `stop` is set; the seconds each one took."""
    connection = connect_once()
    connection.autocommit = True
    pick = random.Random()
    latencies: list[float] = []
    try:
        with connection.cursor() as cursor:
            while not stop.is_set():
                start = time.perf_counter()
                cursor.execute(QUERY, (pick.randint(*ids),))
                cursor.fetchone()
                latencies.append(time.perf_counter() - start)
    finally:
        connection.close()
    return latencies


def run_floor(
    connect_once: Callable[[], Connection], ids: tuple[int, int], threads: int, seconds: int
) -> Timing:
    """Queries/s and latency of `threads` query loops, each with its own connection."""
    stop = threading.Event()
    results: list[list[float]] = []

    def loop() -> None:
        results.append(query_loop(connect_once, ids, stop))

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    start = time.perf_counter()
    try:
        for worker in workers:
            worker.start()
        time.sleep(seconds)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    elapsed = time.perf_counter() - start
    if len(results) != threads:
        raise BenchmarkError("a query loop failed (see above)")
    latencies = [latency for result in results for latency in result]
    return summarize(latencies, elapsed)


def summarize(latencies: list[float], elapsed: float) -> Timing:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Timing(len(latencies) / elapsed, cuts[49], cuts[98])


# --------------------------------------------------------------------------- the table


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def timing_row(measurement: str, unit: str, measured: Timing, errors: str) -> Row:
    rate = f"{measured.rate:,.0f} {unit}"
    return Row(measurement, rate, milliseconds(measured.p50), milliseconds(measured.p99), errors)


def read_errors(result: WrkResult) -> str:
    return f"{result.totals['non_2xx']} non-2xx, {result.describe_socket_errors()}"


def shorter(dev: float, gunicorn: float) -> str:
    """How much shorter gunicorn's latency is than the development server's."""
    if dev >= gunicorn:
        return f"{dev / gunicorn:.1f}x shorter"
    return f"{gunicorn / dev:.1f}x longer"


def ratio_row(gunicorn: Timing, dev: Timing) -> Row:
    ratio = gunicorn.rate / dev.rate
    verdict = "met" if ratio >= RATIO_GOAL else "NOT met"
    return Row(
        "Ratio gunicorn / development server",
        f"{ratio:.1f}x",
        shorter(dev.p50, gunicorn.p50),
        shorter(dev.p99, gunicorn.p99),
        f"goal >= {RATIO_GOAL:.0f}x: {verdict}",
    )


def write_rows(check: WriteCheck) -> list[tuple[str, str]]:
    totals = check.result.totals
    answered = totals["requests"]
    return [
        ("Requests answered", f"{answered:,}"),
        ("... 201 Created", f"{totals['created']:,}"),
        ("... 5xx", f"{totals['server_errors']:,}"),
        ("... other statuses", f"{totals['other']:,}"),
        ("Socket errors", f"{check.result.socket_errors:,}"),
        ("Requests sent, unanswered when wrk stopped", f"{totals['sent'] - answered:,}"),
        ("Rows added to `users`", f"{check.rows_added:,}"),
        ("... of requests without a 201 (in flight at the stop)", f"{check.unconfirmed_committed:,}"),
        ("... of the 201s (must equal the 201s)", f"{check.rows_of_201s:,}"),
        ("Writes lost", f"{check.lost:,}"),
    ]  # fmt: skip


# --------------------------------------------------------------------------- the runs


@dataclass
class Bench:
    """What the runs share: settings, the database, where the scripts and logs go."""

    env: environment.Env
    host: str
    port: int
    ids: tuple[int, int]
    seconds: int
    connections: int
    folder: Path

    def connect_once(self) -> Connection:
        return connect(self.env, self.host, self.port)

    def warm_up(self, script: Path, url: str, *args: object) -> None:
        """A short run, not counted: the server's connections to the database get made."""
        run_wrk(script, url, WARM_UP_SECONDS, self.connections, *args)

    def load(self, script: Path, url: str, *args: object) -> WrkResult:
        """The measured run."""
        return run_wrk(script, url, self.seconds, self.connections, *args)


def measure_floor(bench: Bench) -> list[Row]:
    rows = []
    for threads in (1, FLOOR_THREADS):
        progress(f"floor: the query in a psycopg2 loop on {threads} thread(s), {bench.seconds} s")
        measured = run_floor(bench.connect_once, bench.ids, threads, bench.seconds)
        label = f"Floor: `{QUERY}`, psycopg2, {threads} thread{'s' if threads > 1 else ''}"
        rows.append(timing_row(label, "queries/s", measured, "-"))
    return rows


@dataclass
class GunicornRun:
    """gunicorn's settings, its GET and POST results, and the CPU seconds each worker
    used during the GET run (wrk's connections stay with the worker that accepted them)."""

    settings: str
    get: WrkResult
    post: WrkResult
    worker_cpu: list[float]


def measure_gunicorn(bench: Bench) -> GunicornRun:
    """GET then POST under gunicorn; the POST result is complete once gunicorn has stopped,
    since it finishes the requests in flight first."""
    port = postgres.free_port()
    # Access log on, as production runs it.
    command = app_commands.gunicorn_command(port)
    settings = gunicorn_settings()
    get_script = write_script(bench.folder, "get_user.lua", LUA_GET_USER)
    post_script = write_script(bench.folder, "post_user.lua", LUA_POST_USER)
    with serving(command, bench.folder / "gunicorn.log", port) as server:
        progress(f"GET /users/<id> under gunicorn ({settings}), {bench.seconds} s")
        bench.warm_up(get_script, base_url(port), *bench.ids)
        before = workers_cpu(server)
        get = bench.load(get_script, base_url(port), *bench.ids)
        after = workers_cpu(server)
        progress(f"POST /users under gunicorn, {bench.seconds} s")
        token = secrets.token_hex(4)
        post = bench.load(post_script, base_url(port), token)
    used = sorted((after[pid] - before.get(pid, 0.0) for pid in after), reverse=True)
    return GunicornRun(settings, get, post, used)


def measure_dev_server(bench: Bench) -> WrkResult:
    environment.export(FLASK_DEBUG=0)
    port = postgres.free_port()
    script = write_script(bench.folder, "get_user.lua", LUA_GET_USER)
    with serving(dev_server_command(port), bench.folder / "flask.log", port):
        progress(f"GET /users/<id> under the Flask development server, {bench.seconds} s")
        bench.warm_up(script, base_url(port), *bench.ids)
        return bench.load(script, base_url(port), *bench.ids)


def check_writes(bench: Bench, post: WrkResult) -> WriteCheck:
    total, committed = count_rows(bench.env, bench.host, bench.port, post.unconfirmed)
    return WriteCheck(post, total - SEED_USERS, committed)


@dataclass
class Results:
    """Every measurement of a run."""

    db_server: str
    gunicorn: GunicornRun
    dev_server: WrkResult
    floor: list[Row]
    writes: WriteCheck


def read_table(results: Results) -> str:
    served = results.gunicorn
    gunicorn, dev = timing(served.get), timing(results.dev_server)
    post = results.writes.result
    post_errors = f"{post.totals['server_errors']} 5xx, {post.describe_socket_errors()}"
    rows = [
        timing_row(f"GET /users/<id>, gunicorn {served.settings}", "req/s", gunicorn,
                   read_errors(served.get)),
        timing_row("GET /users/<id>, Flask development server (threaded)", "req/s", dev,
                   read_errors(results.dev_server)),
        ratio_row(gunicorn, dev),
        *results.floor,
        timing_row(f"POST /users (fresh emails), gunicorn {served.settings}", "req/s",
                   timing(post), post_errors),
    ]  # fmt: skip
    return markdown_table(Row("Measurement", "Rate", "p50", "p99", "Errors"), rows)


def describe_setup(results: Results, wrk_version: str, seconds: int, connections: int) -> str:
    return (
        f"{os.cpu_count()} cores; {wrk_version}, {min(WRK_THREADS, connections)} threads, "
        f"{connections} keep-alive connections, {seconds} s per run (GET runs after a "
        f"{WARM_UP_SECONDS} s warm-up); throwaway PostgreSQL ({results.db_server}); "
        f"{SEED_USERS:,} users seeded."
    )


def describe_workers(run: GunicornRun) -> str:
    """How the GET load spread over gunicorn's workers."""
    seconds = ", ".join(f"{used:.1f}" for used in run.worker_cpu)
    return f"CPU seconds of each gunicorn worker during the GET run, busiest first: {seconds}."


def report(results: Results, wrk_version: str, seconds: int, connections: int) -> str:
    """The setup, the tables and the workers' load, in Markdown."""
    write_table = markdown_table(
        ("POST /users for the whole run", "Count"), write_rows(results.writes)
    )
    return "\n\n".join(
        [
            describe_setup(results, wrk_version, seconds, connections),
            read_table(results),
            describe_workers(results.gunicorn),
            write_table,
        ]
    )


def slowest(result: WrkResult) -> str:
    return milliseconds(result.totals["max_us"] / 1e6)


def failures(results: Results) -> list[str]:
    """What must not happen: error answers, socket errors, lost or unexplained writes."""
    gets = {"gunicorn GET": results.gunicorn.get, "dev server GET": results.dev_server}
    problems = [
        f"{name}: {read_errors(result)} errors, slowest answer {slowest(result)}"
        for name, result in gets.items()
        if result.totals["non_2xx"] or result.socket_errors
    ]
    check = results.writes
    totals = check.result.totals
    if totals["server_errors"] or totals["other"] or check.result.socket_errors:
        problems.append(
            f"POST: {totals['server_errors']} 5xx, {totals['other']} other non-201, "
            f"{check.result.describe_socket_errors()} errors, slowest answer {slowest(check.result)}"
        )
    if check.lost:
        problems.append(f"POST: {check.lost} rows fewer than 201s (negative: more)")
    return problems


def measure(seconds: int, connections: int) -> Results:
    """Every measurement, on a throwaway database of the testing environment."""
    scrub_environment()
    env = environment.load_env("testing")
    db_server = throwaway_servers(env).label
    with (
        tempfile.TemporaryDirectory(prefix="load-benchmark-") as folder,
        throwaway_database(env) as (host, port),
    ):
        ids = seed_users(env, host, port)
        bench = Bench(env, host, port, ids, seconds, connections, Path(folder))
        floor = measure_floor(bench)
        gunicorn = measure_gunicorn(bench)
        dev_server = measure_dev_server(bench)
        writes = check_writes(bench, gunicorn.post)
    return Results(db_server, gunicorn, dev_server, floor, writes)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=int, default=30, help="duration of each measured run (default: 30)"
    )
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk's keep-alive connections (default: 16)"
    )
    args = parser.parse_args(argv)
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that `finally` blocks stop what was started.
    with commands.sigterm_unwinds(), exits_on_failure(progress):
        wrk_version = require_wrk()
        results = measure(args.seconds, args.connections)
    print(report(results, wrk_version, args.seconds, args.connections))
    problems = failures(results)
    for problem in problems:
        progress(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
