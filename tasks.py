"""The project's tasks: `inv --list` shows them, `inv --help TASK` explains one.

Each task composes the steps of the `steps` package: load env -> server up -> wait ->
create DB -> run -> server down. Settings users may override live in invoke's config
(the namespace's end; e.g. `test: {coverage: false}` in invoke.yaml).
"""

import contextlib
import os
import shlex
import shutil
import sys
from pathlib import Path

from invoke import Collection, Exit

from steps import PROJECT
from steps.app_commands import (
    coverage_data_of_this_run,
    debugger_pin,
    downgrade_question,
    flask,
    free_or_fail,
    gunicorn_command,
    migrate_to_head,
    migration_at,
    paths_from,
    pytest_command,
    wait_for_http,
    watch_command,
    web_port,
)
from steps.commands import (
    background,
    confirm,
    fail,
    remainder,
    run,
    say,
    task,
    words_before_the_dashes,
)
from steps.compose import (
    compose_command,
    compose_project,
    docker_list,
    require_docker,
    stack_database,
    stack_name,
    without_tty,
)
from steps.environment import export, load_env
from steps.postgres import (
    LOOPBACK,
    applied_revision,
    create_database,
    drop_database,
    free_port,
    wait_until_ready,
)
from steps.servers import (
    clone_databases,
    database_for_tests,
    database_server,
    provider_for,
    task_for,
)
from steps.servers.compose import ComposeProvider
from steps.servers.external import ExternalProvider
from steps.swarm import (
    answering_address,
    remove_stack,
    remove_stack_volumes,
    require_production,
    require_swarm_manager,
    stack_leftovers,
    swarm_spec,
    tag_with_id,
)

# Compose commands that create and start no container: they need no secret.
STARTS_NOTHING = {"down", "logs", "ps", "stop", "kill", "rm", "top", "port", "images", "events"}
# The test that fails when the models and the migrations differ.
MODELS_CHECK = "tests/test_migrations.py::test_the_models_and_the_migrations_agree"


def server(c, env, throwaway=False):
    """database_server with the ready timeout of invoke's config; refused while DATABASE_URL
    names another database, which a task would otherwise not touch while saying it did."""
    if not throwaway:
        refuse_database_url(env)
    return database_server(env, throwaway, c.config.postgres.ready_timeout)


def database_url_target(env) -> str | None:
    """`database NAME at HOST:PORT` of DATABASE_URL, None when it is not set."""
    if not env.vars.get("DATABASE_URL"):
        return None
    from app.config import managed_database_url
    from app.health import connect_arguments

    url = managed_database_url(env["DATABASE_URL"])
    where = connect_arguments(url)  # what psycopg2 is given: host and port may be in the query
    return f"database {url.database} at {where.get('host')}:{where.get('port', 5432)}"


def refuse_database_url(env) -> None:
    if target := database_url_target(env):
        fail(
            f"DATABASE_URL names the {target}, and the db tasks act on the {env.name} "
            "environment's own server: unset DATABASE_URL, or `inv flask -- db ...` for that one"
        )


@contextlib.contextmanager
def app_database(c, env):
    """The app's database: DATABASE_URL's when set (nothing started: the app connects there),
    else the environment's server, with APPLICATION_DB created."""
    if target := database_url_target(env):
        say(f"the app uses DATABASE_URL: the {target}")
        yield
        return
    with server(c, env) as (host, port):
        create_database(env, host, port)
        yield


def production_stack_database(env):
    """The production database running in this project's Compose or Swarm stack on this
    engine (it publishes no port), unless DATABASE_URL or DB_SERVER=local names another."""
    if env.production and env.db_server != "local" and not env.vars.get("DATABASE_URL"):
        return stack_database(env)
    return None


@task
def dev(c):
    """Run the app against the development database (server kept running for next time)."""
    env = load_env()
    host = env.vars.get("FLASK_RUN_HOST") or LOOPBACK
    port = free_or_fail(int(env.vars.get("FLASK_RUN_PORT") or 5000), "FLASK_RUN_PORT", env, host)
    with app_database(c, env):
        migrate_to_head()
        pin = debugger_pin()
        export(WERKZEUG_DEBUG_PIN=pin)
        say(f"serving http://{host}:{port}/ (Ctrl-C stops Flask; the database keeps running)")
        say(f"the debugger's PIN for this run: {pin} (random; only this terminal shows it)")
        raise Exit(code=flask("run", *remainder(c)))


@task
def serve(c):
    """Run the app under gunicorn, as production does, against this environment's database.

    Listens on 127.0.0.1:WEB_PORT (8000); WEB_CONCURRENCY gevent workers, GUNICORN_CONNECTIONS connections each.
    """
    env = load_env()
    port = web_port(env)
    with app_database(c, env):
        migrate_to_head()
        say(f"serving http://{LOOPBACK}:{port}/ with gunicorn (Ctrl-C stops it)")
        raise Exit(code=run(gunicorn_command(port)))


@task(
    help={
        "pattern": "only tests whose name matches (pytest -k)",
        "no-cov": "without coverage (config: test.coverage)",
        "e2e": "the template's own end-to-end checks (tests/e2e/) instead of the app's tests",
        "watch": "run again on every save (pytest-watcher), against one server; Ctrl-C ends it",
    }
)
def test(c, pattern=None, no_cov=False, e2e=False, watch=False):
    """Run the app's tests against a throwaway PostgreSQL; exits with pytest's code.

    Arguments after `--` go to pytest, paths relative to your folder, as with pytest:
    `inv test -- -x tests/test_app.py`. --e2e runs tests/e2e/ over test.workers processes.

    The fast loop: `inv test --watch --pattern P` runs the tests again on every save.
    `APPLICATION_CONFIG=testing inv db.up` keeps a test server running, which every
    `inv test` then uses instead of starting one (`... inv db.down` stops it).
    """
    env = load_env("testing")
    args = paths_from(Path.cwd(), remainder(c))
    # The end-to-end checks wait on servers: over processes; a pattern or a file in one.
    workers = c.config.test.workers if e2e and not (pattern or args) else 0
    coverage = c.config.test.coverage and not no_cov
    command = pytest_command(pattern, coverage, workers) + (["tests/e2e"] if e2e else [])
    with coverage_data_of_this_run() if coverage else contextlib.nullcontext():
        if watch:
            with database_for_tests(env, c.config.postgres.ready_timeout):
                raise Exit(code=run(watch_command(command + args), interactive=True))
        raise Exit(code=run(command + args))


@task
def lint(c):
    """Check the code: ruff check, ruff format --check, and the models against the migrations."""
    clean = c.run("ruff check .", warn=True).ok
    clean &= c.run("ruff format --check .", warn=True).ok
    load_env("testing")
    clean &= run([*pytest_command(coverage=False), "-q", MODELS_CHECK]) == 0
    if not clean:
        fail("lint found problems (see above); `inv format` fixes what ruff can")


@task
def format(c):
    """Format the code and fix what ruff can (ruff format, ruff check --fix)."""
    c.run("ruff format .")
    c.run("ruff check --fix .", warn=True)


@task(
    help={
        "examples": "test cases per API operation (default 50)",
        "url": "fuzz the server running there (e.g. http://127.0.0.1:8000) instead of starting one",
    }
)
def fuzz(c, examples=50, url=None):
    """Fuzz the API from its OpenAPI description (schemathesis): no 5xx, no answer off the schema.

    Without --url: the testing env, a throwaway database, and the app under gunicorn as
    `inv serve` runs it.
    """
    env = load_env("testing")
    schemathesis = shutil.which("schemathesis") or fail(
        "schemathesis not found: `pip install -r requirements/development.txt`"
    )
    checks = [schemathesis, "run", "--checks", "all", "--max-examples", str(examples)]
    if url:
        raise Exit(code=run([*checks, f"{url.rstrip('/')}/openapi.json"]))
    port = free_port()
    with server(c, env, throwaway=True) as (host, db_port):
        # A database of its own, named for this clone and process: the rows it commits reach
        # no other (the tests', on a warm server; a user's, on an external one).
        env.vars["APPLICATION_DB"] = f"{clone_databases(env)[1]}{os.getpid()}"
        export(APPLICATION_DB=env["APPLICATION_DB"])
        drop_database(env, host, db_port)
        create_database(env, host, db_port)
        try:
            migrate_to_head()
            # Without the access log: schemathesis's report is what to read.
            with background(gunicorn_command(port, "--access-logfile", os.devnull)) as web:
                wait_for_http(f"http://{LOOPBACK}:{port}/health", web)
                code = run([*checks, f"http://{LOOPBACK}:{port}/openapi.json"])
        finally:
            drop_database(env, host, db_port)
    raise Exit(code=code)


@task(name="init")
def db_init(c):
    """Create the app's database if missing, then migrate it to head."""
    env = load_env()
    with server(c, env) as (host, port):
        created = create_database(env, host, port)
        if not (PROJECT / "migrations").is_dir():
            if not created and (revision := applied_revision(env, host, port)):
                fail(
                    f"migrations/ is missing, and the database {env['APPLICATION_DB']} is at "
                    f"migration {revision}: restore it (`git checkout -- migrations`)"
                )
            if flask("db", "init") != 0:
                fail("`flask db init` failed (see above)")
        say(f"database {env['APPLICATION_DB']} {'created' if created else 'already exists'}")
        migrate_to_head()


@task(name="migrate", help={"message": "what the migration does (its file name and docstring)"})
def db_migrate(c, message):
    """Autogenerate a migration from the models and print its path."""
    env = load_env()
    versions = PROJECT / "migrations" / "versions"
    before = set(versions.glob("*.py"))
    with server(c, env) as (host, port):
        create_database(env, host, port)
        if flask("db", "migrate", "-m", message) != 0:
            fail("`flask db migrate` failed (see above); is the database at head? `inv db.upgrade`")
    for path in sorted(set(versions.glob("*.py")) - before):
        print(path.relative_to(PROJECT))


@task(name="upgrade", help={"revision": "target revision (default: head)"})
def db_upgrade(c, revision="head"):
    """Apply migrations up to a revision."""
    env = load_env()
    with server(c, env) as (host, port):
        create_database(env, host, port)
        if flask("db", "upgrade", "--", revision) != 0:
            fail("the migration failed (see above); the database is as it was before it")
        say(
            f"the {env.name} database {env['APPLICATION_DB']} is at {migration_at(env, host, port)}"
        )


@task(
    name="downgrade",
    help={"revision": "target revision (default: -1, one step back)", "yes": "no question asked"},
)
def db_downgrade(c, revision="-1", yes=False):
    """Revert migrations (asks first: it may drop data)."""
    env = load_env()
    with server(c, env) as (host, port):
        confirm(downgrade_question(env, host, port, revision), yes, env.production)
        raise Exit(code=flask("db", "downgrade", "--", revision))


@task(name="up")
def db_up(c):
    """Start this environment's database server and keep it running (for tests: a warm one).

    With APPLICATION_CONFIG=testing, every `inv test` uses it instead of starting a server,
    until `APPLICATION_CONFIG=testing inv db.down`.
    """
    env = load_env()
    with server(c, env):
        pass


@task(name="down")
def db_down(c):
    """Stop this environment's database server (its data is kept)."""
    env = load_env()
    provider = provider_for(env)
    if isinstance(provider, ExternalProvider):
        provider.stop()
    elif provider.stop():
        kept = "data kept" if provider.keeps_data else "its data is gone with it"
        say(f"stopped the {env.name} PostgreSQL server ({provider.describe()}); {kept}")
    else:
        say(f"the {env.name} PostgreSQL server is not running: nothing to stop")


@task(name="status")
def db_status(c):
    """Show where this environment's database server is, and whether it runs."""
    env = load_env()
    if in_stack := production_stack_database(env):
        container, where = in_stack
        print(
            f"{env.name}: running in {where} (container {container}); `{task_for(env, 'db.shell')}` opens psql there"
        )
        return
    provider = provider_for(env)
    port = provider.running()
    if port is not None:
        provider.load_password()
        wait_until_ready(env, provider.host, port, timeout=3)
    state = f"running on {provider.host}:{port}" if port is not None else "stopped"
    print(f"{env.name}: {state}; {provider.describe()}; {provider.where()}")


@task(name="shell")
def db_shell(c):
    """Open psql on the app's database, with the psql that matches its server."""
    env = load_env()
    if in_stack := production_stack_database(env):
        psql = ["psql", "-U", env["POSTGRES_USER"], env["APPLICATION_DB"]]
        interactive = ["--interactive", "--tty"] if sys.stdin.isatty() else ["--interactive"]
        raise Exit(code=run(["docker", "exec", *interactive, in_stack[0], *psql], interactive=True))
    with server(c, env) as (host, port):
        create_database(env, host, port)
        export(PGPASSWORD=env["POSTGRES_PASSWORD"])
        raise Exit(code=run(provider_for(env).psql(port, env["APPLICATION_DB"]), interactive=True))


@task(name="reset", help={"yes": "no question asked (required without a TTY and in production)"})
def db_reset(c, yes=False):
    """Drop and recreate the app's database, then migrate it to head."""
    env = load_env()
    refuse_database_url(env)
    question = f"drop the {env.name} database {env['APPLICATION_DB']} and all its data?"
    confirm(question, yes, env.production)
    with server(c, env) as (host, port):
        drop_database(env, host, port)
        create_database(env, host, port)
        migrate_to_head()
        say(f"database {env['APPLICATION_DB']} recreated at head")


@task(name="flask")
def flask_cli(c):
    """Run the flask CLI against this environment's database: `inv flask -- shell`, `-- routes`."""
    env = load_env()
    with app_database(c, env):
        raise Exit(code=flask(*remainder(c), interactive=True))


@task(name="compose")
def compose_cli(c):
    """Run docker compose on this environment's project: `inv compose -- logs db`, `-- ps`."""
    args = without_tty(remainder(c))
    verb = next((word for word in args if not word.startswith("-")), None)
    env = load_env(secrets=verb not in STARTS_NOTHING)
    require_docker(alternative="")
    project = compose_project(env)
    if not env.production:  # the db volume's own password, for the services that use it
        ComposeProvider(env).use_own_password()
    if args[:1] == ["logs"] and not docker_list("ps", project, "--all", "--quiet").strip():
        fail(
            f"the {env.name} Compose project {project} is stopped (no containers): no logs to show"
        )
    raise Exit(code=run(compose_command(env, project) + args))


@task(name="deploy", help={"replicas": "web replicas (default: WEB_REPLICAS, else 2)"})
def stack_deploy(c, replicas=None):
    """Build the image and deploy the production stack on Docker Swarm (again: a rolling update).

    compose/production.yml with compose/swarm.yml on top; waits until every replica runs.
    """
    env = load_env()
    require_production(env)
    require_swarm_manager(c)
    stack = stack_name(env)
    if not c.run(shlex.join([*compose_command(env, stack), "build", "web"]), warn=True).ok:
        fail("building the web image failed (see above)")
    image = tag_with_id(c, env["WEB_IMAGE"])
    export(WEB_IMAGE=image, WEB_REPLICAS=replicas or env.vars.get("WEB_REPLICAS") or 2)
    say(f"deploying stack {stack} with {image}, {os.environ['WEB_REPLICAS']} web replicas")
    deploy = ["docker", "stack", "deploy", "--detach=false", "--resolve-image", "never"]
    deploy += [] if sys.stdout.isatty() else ["--quiet"]  # progress bars, one line per tick
    if run([*deploy, "--compose-file", "-", stack], stdin=swarm_spec(env, stack)) != 0:
        fail(
            f"`docker stack deploy` of {stack} failed (see above); `inv stack.status` shows where it is"
        )
    port = int(env.vars.get("WEB_PORT") or 8000)
    if url := answering_address(port):
        say(f"stack {stack} is up: {url} (Swarm publishes port {port} on every node's interfaces)")
    else:
        say(
            f"stack {stack} is up, but nothing answers on port {port} here: Swarm's routing mesh "
            f"needs IPVS in the kernel; the proxy answers on the network {stack}_default as http://tasks.proxy/"
        )


@task(name="status")
def stack_status(c):
    """Show the production stack's services and their replicas on Docker Swarm."""
    env = load_env()
    require_production(env)
    require_swarm_manager(c)
    stack = stack_name(env)
    if not stack_leftovers(stack).strip():
        fail(f"no stack {stack}: `{task_for(env, 'stack.deploy')}` deploys it")
    c.run(f"docker stack services {stack}", warn=True)
    raise Exit(
        code=c.run(f"docker stack ps --filter desired-state=running {stack}", warn=True).exited
    )


@task(
    name="rm",
    help={"volumes": "also delete its volumes: the database's data", "yes": "no question asked"},
)
def stack_rm(c, volumes=False, yes=False):
    """Remove the production stack from Docker Swarm (its volumes are kept unless --volumes)."""
    env = load_env()
    require_production(env)
    require_swarm_manager(c)
    stack = stack_name(env)
    if volumes:
        confirm(f"delete the volumes of stack {stack}, with the database's data?", yes, True)
    if not stack_leftovers(stack).strip():
        say(f"no stack {stack}: nothing to remove")
    else:
        remove_stack(c, stack)
        say(f"removed stack {stack}" + ("" if volumes else "; its volumes are kept"))
    if volumes:
        removed, kept = remove_stack_volumes(c, stack)
        say(f"deleted the volume(s) {', '.join(removed)}" if removed else "no volume to delete")
        if kept:
            fail(f"Docker kept the volume(s) {', '.join(kept)} (in use): `docker volume rm` them")


@task(
    help={
        "package": "upgrade this package to the newest version its range allows",
        "all": "upgrade every package within its range",
    }
)
def lock(c, package=None, all=False):
    """Re-lock requirements/*.txt (pinned, with hashes) from the ranges in requirements/*.in.

    production, then testing and development constrained by the layer below, so that a
    package has one version in all three. Needs uv (requirements/development.txt).
    """
    uv = shutil.which("uv") or fail("uv not found: `pip install -r requirements/development.txt`")
    compile_ = [uv, "pip", "compile", "--quiet", "--universal", "--python-version", c.config.lock.python,
                "--generate-hashes", "--no-strip-extras", "--index-url", c.config.lock.index_url,
                "--custom-compile-command", "inv lock"]  # fmt: skip
    compile_ += ["--upgrade"] if all else ["--upgrade-package", package] if package else []
    below = None
    for layer in ("production", "testing", "development"):
        constraint = ["--constraint", f"requirements/{below}.txt"] if below else []
        layer_in, layer_txt = f"requirements/{layer}.in", f"requirements/{layer}.txt"
        locking = shlex.join([*compile_, *constraint, layer_in, "-o", layer_txt])
        if not c.run(locking, env={"UV_NO_CONFIG": "1"}, warn=True).ok:
            fail(f"locking {layer_in} failed (see above): nothing after it was re-locked")
        below = layer
    say("locked; install with `pip install -r requirements/development.txt`")


db = Collection(
    "db",
    db_init,
    db_migrate,
    db_upgrade,
    db_downgrade,
    db_up,
    db_down,
    db_status,
    db_shell,
    db_reset,
)
stack = Collection("stack", stack_deploy, stack_status, stack_rm)
ns = Collection(dev, serve, test, fuzz, lint, format, lock, flask_cli, compose_cli, db, stack)
ns.configure(
    {
        "postgres": {"ready_timeout": 30.0},
        "test": {"coverage": True, "workers": 5},
        "lock": {"python": "3.11", "index_url": "https://pypi.org/simple"},
    }
)
words_before_the_dashes(sys.argv, ns.task_names)
