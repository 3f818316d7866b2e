"""The project's tasks (`inv --list`), each composing the steps of the `steps` package.

Settings users may override are invoke's config (the end of this file; e.g. invoke.yaml).
"""

import contextlib
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from invoke import Collection, Exit

from steps import (
    PROJECT,
    app_commands,
    compose,
    postgres,
    scenarios,
    servers,
    snapshots,
    swarm,
    templates,
)
from steps.commands import (
    background,
    confirm,
    fail,
    may_ask,
    remainder,
    run,
    say,
    sigterm_unwinds,
    task,
    words_before_the_dashes,
)
from steps.environment import export, load_env, number_in
from steps.servers.compose import ComposeProvider
from steps.servers.external import ExternalProvider

# Compose commands that create and start no container: they need no secret.
STARTS_NOTHING = {"down", "logs", "ps", "stop", "kill", "rm", "top", "port", "images", "events"}
# The test that fails when the models and the migrations differ.
MODELS_CHECK = "tests/test_migrations.py::test_the_models_and_the_migrations_agree"


def server(c, env, throwaway=False):
    """database_server with the config's ready timeout; refused while DATABASE_URL is set."""
    # DATABASE_URL names another database, which the task would not touch while saying it did.
    if not throwaway:
        refuse_database_url(env)
    return servers.database_server(env, throwaway, c.config.postgres.ready_timeout)


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
    """The app's database: DATABASE_URL's if set, else the environment's server's, created."""
    if target := database_url_target(env):
        say(f"the app uses DATABASE_URL: the {target}")
        yield
        return
    with server(c, env) as (host, port):
        postgres.create_database(env, host, port)
        yield


def production_stack_database(env):
    """The production `db` running in this project's Compose or Swarm stack, unless elsewhere."""
    if env.production and env.db_server != "local" and not env.vars.get("DATABASE_URL"):
        return compose.stack_database(env)
    return None


@task
def dev(c):
    """Run the app against the development database (server kept running for next time)."""
    env = load_env()
    host = env.vars.get("FLASK_RUN_HOST") or postgres.LOOPBACK
    port = app_commands.free_or_fail(env, "FLASK_RUN_PORT", 5000, host)
    with app_database(c, env):
        app_commands.migrate_to_head()
        say(f"serving http://{host}:{port}/ (Ctrl-C stops Flask; the database keeps running)")
        raise Exit(code=flask_run(*remainder(c)))


def flask_run(*args: str) -> int:
    """`flask run` with a random debugger PIN, shown on this terminal only."""
    pin = app_commands.debugger_pin()
    export(WERKZEUG_DEBUG_PIN=pin)
    say(f"the debugger's PIN for this run: {pin} (random; only this terminal shows it)")
    # The reloader watches the app's own folders (app/), not the project's root with a venv in
    # it, nor the standard library: thousands of folders, a third of a second before serving.
    skip = os.pathsep.join([str(PROJECT), f"{sys.prefix}*", f"{sys.base_prefix}*"])
    return app_commands.flask("run", "--exclude-patterns", skip, *args)


def scenario_failed(name: str, error: Exception, outcome: str) -> str:
    reason = (str(error).strip().splitlines() or [""])[0]
    return f"the {name} scenario failed, {outcome}: {type(error).__name__}: {reason}"


@task(name="scenario", help={"name": "the scenario (`inv scenarios` lists them)"})
def scenario_run(c, name):
    """Run the app (as `inv dev`) on a throwaway database holding a scenario, on a free port."""
    env = load_env()
    scenarios.require(name, env.production)
    port = postgres.free_port()
    with server(c, env) as (host, db_port), contextlib.ExitStack() as stack:
        try:
            database = stack.enter_context(templates.copy_of_scenario(env, host, db_port, name))
        except Exit:
            raise
        except Exception as error:
            fail(scenario_failed(name, error, "nothing was made"))
        export(APPLICATION_DB=database)
        url = f"http://{postgres.LOOPBACK}:{port}/"
        say(f"serving the {name} scenario at {url} (Ctrl-C stops it and drops {database})")
        code = flask_run("--host", postgres.LOOPBACK, "--port", str(port))
    raise Exit(code=code)


@task(name="scenarios")
def scenarios_list(c):
    """List the scenarios (scenarios/NAME.py), each with its docstring's first line."""
    names = scenarios.names()
    if not names:
        say("no scenario yet: add scenarios/NAME.py with a build(session) function")
    for name in names:
        print(f"{name:<{max(map(len, names))}}  {scenarios.summary(name)}")


@task
def serve(c):
    """Run the app under gunicorn, as production does, against this environment's database.

    On 127.0.0.1:WEB_PORT (8000): WEB_CONCURRENCY workers, GUNICORN_CONNECTIONS connections each.
    """
    env = load_env()
    port = app_commands.free_or_fail(env, "WEB_PORT", 8000)
    with app_database(c, env):
        app_commands.migrate_to_head()
        say(f"serving http://{postgres.LOOPBACK}:{port}/ with gunicorn (Ctrl-C stops it)")
        raise Exit(code=run(app_commands.gunicorn_command(port)))


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

    Words after `--` go to pytest: `inv test -- -x tests/test_app.py`. A warm server for
    every run: `APPLICATION_CONFIG=testing inv db.up` (`... inv db.down` stops it).
    """
    env = load_env("testing")
    args = app_commands.paths_from(Path.cwd(), remainder(c))
    # The end-to-end checks wait on servers: over processes; a pattern or a file in one.
    workers = c.config.test.workers if e2e and not (pattern or args) else 0
    coverage = c.config.test.coverage and not no_cov
    command = app_commands.pytest_command(pattern, coverage, workers)
    command += ["tests/e2e", *args] if e2e else args
    with app_commands.coverage_data_of_this_run() if coverage else contextlib.nullcontext():
        if watch:
            with servers.database_for_tests(env, c.config.postgres.ready_timeout):
                raise Exit(code=run(app_commands.watch_command(command), interactive=True))
        raise Exit(code=run(command))


@task(help={"port": "serve on this port (config: docs.port)", "no-serve": "build only"})
def docs(c, port=None, no_serve=False):
    """Build the docs site from docs/ (a warning fails the build) and serve it on 127.0.0.1."""
    if not shutil.which("dot"):
        fail(
            "Graphviz's `dot` not found (the docs' diagrams): apt install graphviz (brew on macOS)"
        )
    site = PROJECT / "docs" / "_build" / "html"
    build = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    if not c.run(shlex.join([*build, str(PROJECT / "docs"), str(site)]), warn=True).ok:
        fail("the docs have warnings (see above): each is an error")
    if no_serve:
        return say(f"built {site.relative_to(PROJECT)}/index.html")
    port = str(port or c.config.docs.port)
    if not number_in(port, 1, 65535):
        fail(f"--port {port!r} is not a port number (1 to 65535)")
    if not postgres.port_is_free(int(port)):
        fail(f"port {port} is in use: `inv docs --port N`, or docs.port in invoke.yaml")
    say(f"serving the docs at http://{postgres.LOOPBACK}:{port}/ (Ctrl-C stops it)")
    serve = [sys.executable, "-m", "http.server", "--bind", postgres.LOOPBACK, port]
    raise Exit(code=run([*serve, "--directory", str(site)]))


@task
def lint(c):
    """Check the code: ruff check, ruff format --check, and the models against the migrations."""
    clean = c.run("ruff check .", warn=True).ok
    clean &= c.run("ruff format --check .", warn=True).ok
    load_env("testing")
    clean &= run([*app_commands.pytest_command(coverage=False), "-q", MODELS_CHECK]) == 0
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

    Without --url: the app under gunicorn, as `inv serve` runs it, on a throwaway database.
    """
    env = load_env("testing")
    schemathesis = shutil.which("schemathesis") or fail(
        "schemathesis not found: `pip install -r requirements/development.txt`"
    )
    checks = [schemathesis, "run", "--checks", "all", "--max-examples", str(examples)]
    if url:
        raise Exit(code=run([*checks, f"{url.rstrip('/')}/openapi.json"]))
    port = postgres.free_port()
    with server(c, env, throwaway=True) as (host, db_port):
        # A database of its own, named for this clone and process: the rows it commits reach
        # no other (the tests', on a warm server; a user's, on an external one).
        env.vars["APPLICATION_DB"] = f"{servers.clone_databases(env)[1]}{os.getpid()}"
        export(APPLICATION_DB=env["APPLICATION_DB"])
        postgres.drop_database(env, host, db_port)
        postgres.create_database(env, host, db_port)
        try:
            app_commands.migrate_to_head()
            # Without the access log: schemathesis's report is what to read.
            with background(
                app_commands.gunicorn_command(port, "--access-logfile", os.devnull)
            ) as web:
                app_commands.wait_for_http(f"http://{postgres.LOOPBACK}:{port}/health", web)
                code = run([*checks, f"http://{postgres.LOOPBACK}:{port}/openapi.json"])
        finally:
            postgres.drop_database(env, host, db_port)
    raise Exit(code=code)


@task(name="init")
def db_init(c):
    """Create the app's database if missing, then migrate it to head."""
    env = load_env()
    with server(c, env) as (host, port):
        created = postgres.create_database(env, host, port)
        if not (PROJECT / "migrations").is_dir():
            if not created and (revision := postgres.applied_revision(env, host, port)):
                fail(
                    f"migrations/ is missing, and the database {env['APPLICATION_DB']} is at "
                    f"migration {revision}: restore it (`git checkout -- migrations`)"
                )
            if app_commands.flask("db", "init") != 0:
                fail("`flask db init` failed (see above)")
        say(f"database {env['APPLICATION_DB']} {'created' if created else 'already exists'}")
        app_commands.migrate_to_head()


@task(name="migrate", help={"message": "what the migration does (its file name and docstring)"})
def db_migrate(c, message):
    """Autogenerate a migration from the models and print its path."""
    env = load_env()
    versions = PROJECT / "migrations" / "versions"
    before = set(versions.glob("*.py"))
    with server(c, env) as (host, port):
        postgres.create_database(env, host, port)
        if app_commands.flask("db", "migrate", "-m", message) != 0:
            fail("`flask db migrate` failed (see above); is the database at head? `inv db.upgrade`")
    for path in sorted(set(versions.glob("*.py")) - before):
        print(path.relative_to(PROJECT))


@task(name="upgrade", help={"revision": "target revision (default: head)"})
def db_upgrade(c, revision="head"):
    """Apply migrations up to a revision."""
    env = load_env()
    with server(c, env) as (host, port):
        postgres.create_database(env, host, port)
        if app_commands.flask("db", "upgrade", "--", revision) != 0:
            fail("the migration failed (see above); the database is as it was before it")
        at = app_commands.migration_at(env, host, port)
        say(f"the {env.name} database {env['APPLICATION_DB']} at {host}:{port} is at {at}")


@task(
    name="downgrade",
    help={"revision": "target revision (default: -1, one step back)", "yes": "no question asked"},
)
def db_downgrade(c, revision="-1", yes=False):
    """Revert migrations (asks first: it may drop data)."""
    env = load_env()
    with server(c, env) as (host, port):
        confirm(app_commands.downgrade_question(env, host, port, revision), yes, env.production)
        raise Exit(code=app_commands.flask("db", "downgrade", "--", revision))


@task(name="up")
def db_up(c):
    """Start this environment's database server and keep it running (for tests: a warm one)."""
    env = load_env()
    with server(c, env):
        pass


@task(name="down")
def db_down(c):
    """Stop this environment's database server (its data is kept)."""
    env = load_env()
    provider = servers.provider_for(env)
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
            f"{env.name}: running in {where} (container {container}); `{servers.task_for(env, 'db.shell')}` opens psql there"
        )
        return
    provider = servers.provider_for(env)
    port = provider.running()
    if port is not None:
        provider.load_password()
        postgres.wait_until_ready(env, provider.host, port, timeout=3)
    state = f"running on {provider.host}:{port}" if port is not None else "stopped"
    print(f"{env.name}: {state}; {provider.describe()}; {provider.where()}")


@task(name="shell")
def db_shell(c):
    """Open psql on the app's database, with the psql that matches its server."""
    env = load_env()
    refuse_database_url(env)
    with database_client(c, env, "psql", sys.stdin.isatty()) as (psql, _):
        raise Exit(code=run([*psql, *remainder(c)], interactive=True))


@task(
    name="seed",
    help={"name": "the scenario (`inv scenarios` lists them)", "yes": "no question asked"},
)
def db_seed(c, name, yes=False):
    """Add a scenario's data to this environment's database (asks first where it has rows)."""
    env = load_env()
    scenarios.require(name, env.production)
    target = f"the {env.name} database {env['APPLICATION_DB']}"
    with server(c, env) as (host, port):
        postgres.create_database(env, host, port)
        app_commands.migrate_to_head()
        if rows := postgres.tables_with_rows(env, host, port):
            question = f"{target} has rows (in {', '.join(rows)}): add the {name} scenario to them?"
            confirm(question, yes, env.production)
        try:
            scenarios.build(name, lambda: postgres.connect(env, host, port, env["APPLICATION_DB"]))
        except Exception as error:
            fail(scenario_failed(name, error, "nothing was added"))
        say(f"{target} holds the {name} scenario's data")


@task(name="reset", help={"yes": "no question asked (required without a TTY and in production)"})
def db_reset(c, yes=False):
    """Drop and recreate the app's database, then migrate it to head."""
    env = load_env()
    refuse_database_url(env)
    target = f"the {env.name} database {env['APPLICATION_DB']}"
    may_ask(f"drop {target} and all its data?", yes, env.production)
    with server(c, env) as (host, port):
        confirm(f"drop {target} at {host}:{port} and all its data?", yes, env.production)
        postgres.drop_database(env, host, port)
        postgres.create_database(env, host, port)
        app_commands.migrate_to_head()
        say(f"{target} at {host}:{port} recreated at head")


@contextlib.contextmanager
def environment_snapshots(c, env):
    """The environment's snapshots, its server up."""
    with (
        server(c, env) as (host, port),
        postgres.server_connection(env, host, port) as connection,
        connection.cursor() as cursor,
    ):
        yield snapshots.Snapshots(env, host, port, cursor)


@task(
    name="snapshot",
    help={
        "name": "the snapshot's name: lowercase letters, digits and _",
        "rm": "remove the snapshot NAME instead",
        "yes": "end the connections open on the database without asking",
    },
)
def db_snapshot(c, name, rm=False, yes=False):
    """Snapshot this environment's database as NAME (`db.restore NAME` brings it back)."""
    env = load_env()
    snapshots.check_name(name)
    with sigterm_unwinds(), environment_snapshots(c, env) as found:
        say(found.remove(name) if rm else found.take(name, yes))


@task(name="restore", help={"name": "the snapshot", "yes": "no question asked"})
def db_restore(c, name, yes=False):
    """Replace this environment's database with snapshot NAME (asks first)."""
    env = load_env()
    snapshots.check_name(name)
    with sigterm_unwinds(), environment_snapshots(c, env) as found:
        told = found.restore(name, yes)
    for line in told:
        say(line)


@task(name="snapshots")
def db_snapshots(c):
    """List this environment's snapshots: name, size, migration, age."""
    env = load_env()
    with environment_snapshots(c, env) as found:
        listed = found.listing()
    if not listed:
        say(
            f"no snapshot of the {env.name} database: `{servers.task_for(env, 'db.snapshot NAME')}`"
        )
    for name, size, head, taken in listed:
        print(f"{name:<24}  {size / 2**20:8.1f} MB  at {head}  {snapshots.age(taken)} old")


@contextlib.contextmanager
def database_client(c, env, program: str, tty: bool = False):
    """(a client command on the app's database, where that database is), whoever runs it."""
    database = env["APPLICATION_DB"]
    if target := database_url_target(env):
        from app.config import managed_database_url

        url = managed_database_url(env["DATABASE_URL"]).set(drivername="postgresql")
        export(PGPASSWORD=url.password or "")  # not on the command line, which others can read
        uri = url.set(password=None).render_as_string(hide_password=False)
        yield [servers.client_program(program), "-d", uri], f"the {target} (DATABASE_URL)"
        return
    if in_stack := production_stack_database(env):
        container, where = in_stack
        exec_ = ["docker", "exec", "-i", *(["-t"] if tty else []), container]
        yield (
            [*exec_, program, "-U", env["POSTGRES_USER"], "-d", database],
            f"the {env.name} database {database} in {where}",
        )
        return
    with server(c, env) as (host, port):
        postgres.create_database(env, host, port)
        client = servers.app_database_client(env, port, program, tty)
        yield client, f"the {env.name} database {database} at {host}:{port}"


@task(name="dump", help={"file": "where to write it (default: <database>-<env>-<time>.dump)"})
def db_dump(c, file=None):
    """Dump this environment's database (pg_dump's custom format, the server's own pg_dump)."""
    env = load_env()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(file or f"{env['APPLICATION_DB']}-{env.name}-{stamp}.dump").absolute()
    if path.exists():
        fail(f"{path} exists: give another --file, or remove it")
    if not path.parent.is_dir():
        fail(f"no folder {path.parent} for the dump: make it, or give another --file")
    with database_client(c, env, "pg_dump") as (client, where):
        snapshots.dump_to(client, path)
    say(f"dumped {where} to {path}")


@task(
    name="load",
    help={"file": "a dump of `inv db.dump` (pg_dump's custom format)", "yes": "no question asked"},
)
def db_load(c, file, yes=False):
    """Replace this environment's database's contents with a dump (asks first)."""
    env = load_env()
    path = Path(file).absolute()
    if not path.is_file():
        fail(f"no file {path}")
    with database_client(c, env, "pg_restore") as (client, where):
        confirm(f"replace the contents of {where} with {path.name}?", yes, env.production)
        snapshots.load_from(client, path)
    say(f"loaded {path.name} into {where}")


@task(name="flask")
def flask_cli(c):
    """Run the flask CLI against this environment's database: `inv flask -- shell`, `-- routes`."""
    env = load_env()
    with app_database(c, env):
        raise Exit(code=app_commands.flask(*remainder(c), interactive=True))


@task(name="compose")
def compose_cli(c):
    """Run docker compose on this environment's project: `inv compose -- logs db`, `-- ps`."""
    args = compose.without_tty(remainder(c))
    verb = next((word for word in args if not word.startswith("-")), None)
    env = load_env(secrets=verb not in STARTS_NOTHING)
    compose.require_docker(alternative="")
    project = compose.compose_project(env)
    if not env.production:  # the db volume's own password, for the services that use it
        ComposeProvider(env).use_own_password()
    if args[:1] == ["logs"] and not compose.docker_list("ps", project, "--all", "--quiet").strip():
        fail(
            f"the {env.name} Compose project {project} is stopped (no containers): no logs to show"
        )
    raise Exit(code=run(compose.compose_command(env, project) + args))


def production_stack(c):
    """The production environment and its stack's name, on a Swarm manager."""
    env = load_env()
    swarm.require_production(env)
    swarm.require_swarm_manager(c)
    return env, compose.stack_name(env)


@task(name="deploy", help={"replicas": "web replicas (default: WEB_REPLICAS, else 2)"})
def stack_deploy(c, replicas=None):
    """Build the image and deploy the production stack on Docker Swarm (again: a rolling update)."""
    env, stack = production_stack(c)
    if not c.run(shlex.join([*compose.compose_command(env, stack), "build", "web"]), warn=True).ok:
        fail("building the web image failed (see above)")
    image = swarm.tag_with_id(c, env["WEB_IMAGE"])
    export(WEB_IMAGE=image, WEB_REPLICAS=replicas or env.vars.get("WEB_REPLICAS") or 2)
    say(f"deploying stack {stack} with {image}, {os.environ['WEB_REPLICAS']} web replicas")
    deploy = ["docker", "stack", "deploy", "--detach=false", "--resolve-image", "never"]
    deploy += [] if sys.stdout.isatty() else ["--quiet"]  # progress bars, one line per tick
    if run([*deploy, "--compose-file", "-", stack], stdin=swarm.swarm_spec(env, stack)) != 0:
        fail(
            f"`docker stack deploy` of {stack} failed (see above); `inv stack.status` shows where it is"
        )
    port = int(env.vars.get("WEB_PORT") or 8000)
    if url := swarm.answering_address(port):
        say(f"stack {stack} is up: {url} (Swarm publishes port {port} on every node's interfaces)")
    else:
        say(
            f"stack {stack} is up, but nothing answers on port {port} here: Swarm's routing mesh "
            f"needs IPVS in the kernel; the proxy answers on the network {stack}_default as http://tasks.proxy/"
        )


@task(name="status")
def stack_status(c):
    """Show the production stack's services and their replicas on Docker Swarm."""
    env, stack = production_stack(c)
    if not swarm.stack_leftovers(stack).strip():
        fail(f"no stack {stack}: `{servers.task_for(env, 'stack.deploy')}` deploys it")
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
    _, stack = production_stack(c)
    if volumes:
        confirm(f"delete the volumes of stack {stack}, with the database's data?", yes, True)
    if not swarm.stack_leftovers(stack).strip():
        say(f"no stack {stack}: nothing to remove")
    else:
        swarm.remove_stack(c, stack)
        say(f"removed stack {stack}" + ("" if volumes else "; its volumes are kept"))
    if volumes:
        removed, kept = swarm.remove_stack_volumes(c, stack)
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
    """Re-lock requirements/*.txt (pinned, with hashes) from the ranges in requirements/*.in."""
    # Each layer constrained by the one below: a package has one version in all three.
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
    db_seed,
    db_snapshot,
    db_restore,
    db_snapshots,
    db_dump,
    db_load,
)
stack = Collection("stack", stack_deploy, stack_status, stack_rm)
ns = Collection(dev, serve, test, fuzz, docs, lint, format, lock, flask_cli, compose_cli, db, stack)
ns.add_task(scenario_run)
ns.add_task(scenarios_list)
ns.configure(
    {
        "postgres": {"ready_timeout": 30.0},
        "test": {"coverage": True, "workers": 5},
        "lock": {"python": "3.11", "index_url": "https://pypi.org/simple"},
        "docs": {"port": 8800},
    }
)
words_before_the_dashes(sys.argv, ns.task_names)
