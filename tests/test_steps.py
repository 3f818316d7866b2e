"""The steps on their own, in this process: no server and no subprocess unless a test says why."""

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from impostor import Impostor
from invoke import Config, Exit, MockContext, Result

import tasks
from steps import PROJECT, app_commands, commands, compose, environment, postgres, servers, swarm
from steps.servers import local, local_files, local_template

PRODUCTION = {"SECRET_KEY": "d41d8cd98f00b204e9800998ecf8427e", "POSTGRES_PASSWORD": "pw"}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with a copy of env/, which the steps read instead of the real one."""
    shutil.copytree(PROJECT / "env", tmp_path / "env", ignore=shutil.ignore_patterns("*.local.env"))
    monkeypatch.setattr(environment, "PROJECT", tmp_path)
    return tmp_path


def failure(call, *args, **kwargs) -> str:
    """The one-line message a step fails with."""
    with pytest.raises(Exit) as raised:
        call(*args, **kwargs)
    assert raised.value.code == 1
    assert "\n" not in raised.value.message
    return raised.value.message


BAD_ENVIRONMENTS = [
    ("staging", {}, "unknown APPLICATION_CONFIG 'staging': choose one of development, testing, production"),
    ("development", {"POSTGRES_USER": ""}, "missing variable(s) POSTGRES_USER"),
    ("testing", {"APPLICATION_DB": "test; DROP"}, "is not a plain identifier"),
    ("development", {"DB_SERVER": "kubernetes"}, "unknown DB_SERVER 'kubernetes'"),
    ("development", {"POSTGRES_PORT": "eighty"}, "is not a port number"),
    ("development", {"POSTGRES_PORT": "70000"}, "is not a port number"),
    ("development", {"POSTGRES_PORT": "auto", "DB_SERVER": "external"}, "POSTGRES_PORT=auto needs a server"),
    ("production", {}, "missing variable(s) POSTGRES_PASSWORD, SECRET_KEY"),
    ("production", {**PRODUCTION, "SECRET_KEY": "change-me"}, "SECRET_KEY is a placeholder"),
    ("production", {**PRODUCTION, "SECRET_KEY": "development-only-not-secret"}, "SECRET_KEY is one committed in env/"),
    ("production", {**PRODUCTION, "FLASK_DEBUG": "1"}, "FLASK_DEBUG is on with the production config"),
    ("development", {"DATABASE_URL": "mysql://u:p@db.example/app"}, "DATABASE_URL is not a PostgreSQL URL"),
    ("development", {"DATABASE_TIMEOUT": "soon"}, "DATABASE_TIMEOUT='soon' is not a number of seconds"),
    ("testing", {"HEALTH_TIMEOUT": "0"}, "HEALTH_TIMEOUT='0' is not a number of seconds"),
    ("development", {"FLASK_CONFIG": "develop"}, "unknown FLASK_CONFIG 'develop': choose one of development, testing, production"),
    ("development", {"FLASK_RUN_PORT": "abc"}, "FLASK_RUN_PORT='abc' is not a port number"),
    ("development", {"WEB_PORT": "70000"}, "WEB_PORT='70000' is not a port number"),
    ("development", {"POSTGRES_USER": "o'brien"}, "POSTGRES_USER has a quote"),
    ("development", {"POSTGRES_PASSWORD": "pass\nword"}, "POSTGRES_PASSWORD has a newline"),
    ("development", {"GREETING": "x" * 200_000}, "GREETING is 200,000 characters long"),
    ("development", {"POSTGRES_PORT": "5432\u00b2"}, "POSTGRES_PORT='5432\u00b2' is not a port number"),
    ("development", {"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY='abc' is not a whole number from 1"),
    ("development", {"GUNICORN_CONNECTIONS": "0"}, "GUNICORN_CONNECTIONS='0' is not a whole number"),
    ("production", {**PRODUCTION, "FLASK_CONFIG": "development"}, "FLASK_CONFIG=development with APPLICATION_CONFIG=production: they must agree"),
    ("production", {**PRODUCTION, "SECRET_KEY": "CHANGE_ME_IN_PRODUCTION"}, "SECRET_KEY is a placeholder (it holds 'CHANGE')"),
    ("production", {**PRODUCTION, "SECRET_KEY": "0123456789abcdef"}, "SECRET_KEY holds a run of consecutive characters"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "environ", "message"), BAD_ENVIRONMENTS)
def test_a_bad_environment_is_one_line_naming_the_fix(project, name, environ, message):
    assert message in failure(environment.read_env, name, environ)


def test_the_process_environment_wins_over_the_local_file_which_wins_over_the_committed_one(
    project,
):
    (project / "env" / "development.local.env").write_text(
        "POSTGRES_PORT=6000\nAPPLICATION_DB=mine\n"
    )
    env = environment.read_env("development", {"APPLICATION_DB": "shell"})
    assert (env["POSTGRES_PORT"], env["APPLICATION_DB"], env["POSTGRES_DB"]) == (
        "6000",
        "shell",
        "postgres",
    )
    assert env.name == env["APPLICATION_CONFIG"] == "development"


def test_application_config_names_the_environment(project):
    assert environment.read_env(None, {"APPLICATION_CONFIG": "testing"}).name == "testing"
    assert environment.read_env(None, {}).name == "development"


def test_a_misspelt_application_config_is_refused_where_the_task_picks_the_environment(project):
    message = failure(environment.read_env, "testing", {"APPLICATION_CONFIG": "develpment"})
    assert "unknown APPLICATION_CONFIG 'develpment'" in message


def test_the_hint_names_where_a_value_came_from(project):
    from_file = environment.read_env("development", {})
    from_shell = environment.read_env("development", {"FLASK_RUN_PORT": "5000"})
    assert environment.where_to_set(from_file, "FLASK_RUN_PORT") == (
        "set FLASK_RUN_PORT in env/development.local.env"
    )
    assert "change FLASK_RUN_PORT in your environment" in environment.where_to_set(
        from_shell, "FLASK_RUN_PORT"
    )


def test_a_malformed_env_line_is_named_with_its_file_and_line(project):
    (project / "env" / "development.local.env").write_text(
        "POSTGRES_PORT=5433\nthis is not a variable\n"
    )
    message = failure(environment.read_env, "development", {})
    assert "env/development.local.env:2: cannot parse this line" in message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"POSTGRES_PORT=5433\nSECRET_KEY=caf\xe9\n",
            "env/development.local.env:2: not UTF-8 text",
        ),
        (
            b"POSTGRES_PORT=5433\nAPPLICATION_DB\n",
            "env/development.local.env:2: cannot parse this line",
        ),
        (b"SECRET_KEY=a\x00b\n", "'SECRET_KEY' holds a NUL byte"),
    ],
)
def test_garbage_in_an_env_file_is_one_line(project, content, message):
    (project / "env" / "development.local.env").write_bytes(content)
    assert message in failure(environment.read_env, "development", {})


def test_a_database_url_in_the_shell_never_reaches_the_tests(project, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://me:secret@prod.example/app")
    env = environment.load_env("testing")
    assert "DATABASE_URL" not in env.vars and "DATABASE_URL" not in os.environ
    assert "DATABASE_URL is ignored by the testing environment" in capsys.readouterr().err


def test_the_debugger_pin_is_random_for_each_run():
    pins = {app_commands.debugger_pin() for _ in range(20)}
    assert len(pins) == 20
    assert all(len(pin) == 11 and pin.replace("-", "").isdigit() for pin in pins)


def test_db_shell_uses_the_psql_that_came_with_a_local_server(tmp_path, monkeypatch):
    """A psql earlier on PATH (an older client, say) is not the one used."""
    (tmp_path / "psql").write_text("#!/bin/sh\n")
    (tmp_path / "psql").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    env = environment.Env("development", {"POSTGRES_USER": "postgres", "DB_SERVER": "local"})
    provider = local.LocalProvider(env)
    command = provider.client("psql", 5433, "application")
    assert command[0] == str(local.find_server_binaries() / "psql")
    assert command[1:] == ["-h", provider.host, "-p", "5433", "-U", "postgres", "-d", "application"]


def test_a_missing_env_file_says_how_to_restore_it(project):
    (project / "env" / "production.env").unlink()
    assert "git checkout -- env/production.env" in failure(environment.read_env, "production", {})


def test_reading_the_environment_exports_nothing_and_loading_it_does(project, monkeypatch):
    monkeypatch.delenv("APPLICATION_DB", raising=False)
    environment.read_env("testing", {})
    assert "APPLICATION_DB" not in os.environ
    monkeypatch.setenv("APPLICATION_CONFIG", "testing")
    environment.load_env()
    assert os.environ["APPLICATION_DB"] == "test"


def test_arguments_after_the_dashes_keep_their_quoting():
    argv = ["inv", "test", "--", "-k", "create or delete", "tests/test users.py"]
    assert commands.remainder(MockContext(), argv) == [
        "-k",
        "create or delete",
        "tests/test users.py",
    ]


def test_paths_after_the_dashes_are_relative_to_the_user_s_folder(tmp_path):
    (tmp_path / "test_models.py").touch()
    args = ["test_models.py::test_one", "-k", "test_models.py", "-x", "not_a_file.py"]
    assert app_commands.paths_from(tmp_path, args) == [
        f"{tmp_path}/test_models.py::test_one", "-k", "test_models.py", "-x", "not_a_file.py",
    ]  # fmt: skip


def test_every_task_s_one_line_help_is_a_whole_sentence():
    for name in tasks.ns.task_names:
        first, _, rest = tasks.ns[name].__doc__.strip().partition("\n")
        assert first[0].isupper() and first.endswith("."), name
        assert not rest or rest.startswith("\n"), f"{name}: its first sentence goes on"
    assert "APPLICATION_CONFIG=testing inv db.up" in tasks.test.__doc__  # the fast loop


def test_ctrl_c_stops_the_task_after_its_command_unless_the_command_is_interactive():
    with pytest.raises(KeyboardInterrupt):
        commands.exit_code(2, [signal.SIGINT])
    assert commands.exit_code(0, [signal.SIGINT], interactive=True) == 0
    assert commands.exit_code(-signal.SIGINT, []) == 130


def test_a_ctrl_c_while_the_command_starts_reaches_it(monkeypatch):
    """Not lost: the command would run on, and the task wait for it (a flask run: forever)."""
    started = []

    def start_on_a_ctrl_c(args, **options):
        os.kill(os.getpid(), signal.SIGINT)  # handled here, before the child exists
        started.append(subprocess.Popen(args, **options))
        return started[0]

    monkeypatch.setattr(commands, "start_foreground", start_on_a_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        commands.run(["sleep", "5"])
    assert started[0].returncode == -signal.SIGINT


def test_compose_exec_and_run_get_minus_t_without_a_terminal():
    assert compose.without_tty(["exec", "db", "psql"], interactive=False) == [
        "exec",
        "-T",
        "db",
        "psql",
    ]
    assert compose.without_tty(["--ansi", "never", "run", "web"], interactive=False)[:3] == [
        "--ansi",
        "never",
        "run",
    ]
    assert compose.without_tty(["logs", "db"], interactive=False) == ["logs", "db"]
    assert compose.without_tty(["exec", "db", "psql"], interactive=True) == ["exec", "db", "psql"]


def test_pytest_runs_with_coverage_unless_turned_off():
    assert "--cov=app" in app_commands.pytest_command()
    assert app_commands.pytest_command("user", coverage=False)[-4:] == [
        "-p",
        "no:pytest_cov",
        "-k",
        "user",
    ]


@pytest.mark.parametrize(
    ("production", "message"),
    [(True, "refusing in production without --yes"), (False, "no terminal to ask on: pass --yes")],
)
def test_destroying_data_needs_yes_without_a_terminal_or_in_production(
    monkeypatch, production, message
):
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    assert message in failure(commands.confirm, "drop it?", False, production)
    commands.confirm("drop it?", True, production)


def test_pg_bin_without_a_server_is_named(monkeypatch):
    monkeypatch.setenv("PG_BIN", "/nonexistent")
    assert "PG_BIN=/nonexistent has no `postgres`" in failure(local.find_server_binaries)


def test_no_server_binaries_anywhere_is_one_clear_error(monkeypatch):
    """No machine here lacks them, so their absence is mocked: each lookup finds nothing."""
    monkeypatch.delenv("PG_BIN", raising=False)
    monkeypatch.setattr(local_template.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(local_template.shutil, "which", lambda name: None)
    monkeypatch.setattr(local_template, "DEBIAN_SERVER_BINARIES", "/nonexistent/*/bin")
    assert "no PostgreSQL server binaries found" in failure(local_template.find_server_binaries)


def test_sigterm_unwinds_only_inside_the_block():
    before = signal.getsignal(signal.SIGTERM)
    with commands.sigterm_unwinds(), pytest.raises(SystemExit) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
    assert raised.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_importing_the_tasks_changes_no_process_state():
    """In a fresh interpreter: this one imported them long ago."""
    probe = (
        "import os, signal; before = (dict(os.environ), [signal.getsignal(s) for s in signal.valid_signals()]); "
        "import tasks, steps.compose, steps.servers.local, steps.servers, steps.swarm; "
        "after = (dict(os.environ), [signal.getsignal(s) for s in signal.valid_signals()]); "
        "print(before == after)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT, capture_output=True, text=True
    )
    assert result.stdout.strip() == "True", result.stderr


def test_swarm_gets_the_resolved_files_less_what_it_refuses():
    spec = {
        "name": "app-production",
        "services": {
            "web": {
                "build": {"context": "."}, "depends_on": {"db": {"condition": "service_healthy"}},
                "restart": "unless-stopped", "command": None, "deploy": {"resources": {}},
                "ports": [{"target": 8000, "published": "8000", "host_ip": "127.0.0.1"}],
            }
        },
        "volumes": {"data": {"name": "app-production_data"}},
    }  # fmt: skip
    web = json.loads(swarm.swarm_format(spec))["services"]["web"]
    assert set(web) == {"ports", "deploy"}
    assert web["ports"] == [{"target": 8000, "published": 8000}]


def test_a_changed_config_file_is_a_new_swarm_config(tmp_path):
    conf = tmp_path / "nginx.conf"

    def config_name() -> str:
        spec = {"services": {}, "configs": {"proxy": {"name": "app_proxy", "file": str(conf)}}}
        return json.loads(swarm.swarm_format(spec))["configs"]["proxy"]["name"]

    conf.write_text("server {}\n")
    first = config_name()
    assert first.startswith("app_proxy-") and config_name() == first
    conf.write_text("server { listen 80; }\n")
    assert config_name() not in (first, "app_proxy")


def mock_context(result: Result) -> MockContext:
    """invoke's MockContext with the namespace's settings, answering every command with `result`."""
    return MockContext(config=Config(overrides=tasks.ns.configuration()), run=result, repeat=True)


def test_lock_compiles_each_layer_constrained_by_the_one_below(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/bin/{name}")
    c = mock_context(Result())
    tasks.lock(c, package="flask")
    commands_run = [call.args[0] for call in c.run.call_args_list]
    assert len(commands_run) == 3
    assert "requirements/production.in -o requirements/production.txt" in commands_run[0]
    assert "--constraint requirements/production.txt requirements/testing.in" in commands_run[1]
    assert "--constraint requirements/testing.txt requirements/development.in" in commands_run[2]
    assert all(
        "--upgrade-package flask" in command and "--generate-hashes" in command
        for command in commands_run
    )


def test_a_failed_lock_stops_at_that_layer(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/bin/{name}")
    c = MockContext(
        config=Config(overrides=tasks.ns.configuration()), run=Result(exited=1), repeat=True
    )
    assert "locking requirements/production.in failed" in failure(tasks.lock, c)
    assert c.run.call_count == 1


def test_the_tasks_import_without_posix_only_modules():
    """As on Windows, for our code (invoke, first, picks its own terminal modules by platform)."""
    probe = (
        "import sys, invoke, dotenv; sys.modules.update(dict.fromkeys(['fcntl', 'pwd', 'grp', 'termios', 'resource'])); "
        "import tasks, steps.servers.local, steps.servers.local_files, steps.compose, steps.servers, steps.swarm, steps.app_commands; print('imported')"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT, capture_output=True, text=True
    )
    assert result.stdout.strip() == "imported", result.stderr


def test_a_server_that_stopped_on_a_full_disk_says_so(tmp_path):
    cluster = local.LocalCluster(tmp_path)
    cluster.log.write_text(
        "2026-11-25 LOG:  checkpoint starting\n"
        '2026-11-25 PANIC:  could not write to file "pg_wal/xlogtemp.42": No space left on device\n'
        '2026-11-25 LOG:  background worker "logical replication launcher" exited\n'
        "2026-11-25 LOG:  database system is shut down\n"
    )
    assert cluster.why_it_stopped().endswith("No space left on device")


def test_two_clones_of_one_project_get_their_own_compose_projects(tmp_path):
    first, second = tmp_path / "a" / "myapp", tmp_path / "b" / "myapp"
    for clone in (first, second):
        clone.mkdir(parents=True)
        shutil.copy(PROJECT / "pyproject.toml", clone)
    assert compose.project_name(first) != compose.project_name(second)
    assert compose.project_name(first).startswith("flask-invoke-")
    assert compose.project_name(first) == compose.project_name(tmp_path / "a" / "myapp")


def test_the_swarm_stack_and_the_compose_production_project_have_their_own_names():
    env = environment.Env("production", {"COMPOSE_PROJECT_NAME": "shop"})
    assert (compose.stack_name(env), compose.compose_project(env)) == (
        "shop-production-swarm", "shop-production",
    )  # fmt: skip


def test_the_project_s_name_in_pyproject_names_its_compose_projects_and_image(project):
    (project / "pyproject.toml").write_text('[project]\nname = "Shop API"\nversion = "1"\n')
    assert compose.project_name(project).startswith("shop-api-")
    assert compose.project_name(project) != compose.project_name(PROJECT)
    development = environment.read_env("development", {})
    assert development["WEB_IMAGE"] == f"{compose.project_name(PROJECT)}-web:dev"
    assert environment.read_env("testing", {"WEB_IMAGE": "mine:1"})["WEB_IMAGE"] == "mine:1"


def test_compose_project_name_is_honoured():
    env = environment.Env("development", {"COMPOSE_PROJECT_NAME": "shop"})
    assert compose.compose_project(env) == "shop-development"
    assert (
        compose.compose_project(environment.Env("testing", {}))
        == f"{compose.project_name(PROJECT)}-testing"
    )


def test_templates_left_half_made_by_a_killed_run_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".work-{dead.pid}-abc").mkdir()
    (tmp_path / f".work-{os.getpid()}-def").mkdir()  # a run in progress: ours
    local_template.remove_interrupted_work(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".work-{os.getpid()}-def"]


def test_the_template_cache_keeps_the_most_recently_used(tmp_path):
    for age, name in enumerate(["e", "d", "c", "b", "a"]):  # a is the oldest
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1_700_000_000 - age * 60,) * 2)
    local_template.prune_cache(tmp_path, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d", "e"]


def test_a_docker_socket_this_user_may_not_use_is_named_as_a_permission_problem(
    tmp_path, monkeypatch
):
    """Mocked: a `docker` refusing as Docker's client refuses a user outside the `docker` group."""
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\necho 'permission denied while trying to connect to the Docker daemon socket "
        "at unix:///var/run/docker.sock' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    compose.docker_engine_answers.cache_clear()
    try:
        message = failure(compose.require_docker)
    finally:
        compose.docker_engine_answers.cache_clear()
    assert "may not use its socket (permission denied)" in message
    assert "add yourself to the `docker` group" in message


def test_the_whole_suite_is_spread_over_workers_and_a_run_of_one_file_is_not():
    assert app_commands.pytest_command(workers=4)[-4:] == [
        "--numprocesses",
        "4",
        "--dist",
        "loadfile",
    ]
    assert "--numprocesses" not in app_commands.pytest_command(workers=1)
    assert "--numprocesses" not in app_commands.pytest_command("user")


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["inv", "compose", "up", "-d"], "`inv compose -- up -d`"),
        (["/venv/bin/inv", "test", "tests/test_users.py"], "`inv test -- tests/test_users.py`"),
        (["inv", "flask", "db", "current", "--", "-v"], "`inv flask -- db current`"),
        (["/venv/lib/invoke/__main__.py", "compose", "ps"], "`inv compose -- ps`"),
    ],
)
def test_words_for_the_command_before_the_dashes_are_one_line_naming_where_they_go(argv, hint):
    with pytest.raises(
        Exit, match=f"is not a task: what goes to .* comes after `--`, as in {hint}"
    ):
        commands.words_before_the_dashes(argv, tasks.ns.task_names)


@pytest.mark.parametrize(
    "argv",
    [
        ["inv", "compose", "--", "up", "-d"],
        ["inv", "test", "--pattern", "user", "dev"],
        ["inv", "dev", "test"],
        ["pytest", "compose", "up"],
    ],
)
def test_tasks_options_and_other_tasks_are_left_to_invoke(argv):
    commands.words_before_the_dashes(argv, tasks.ns.task_names)


def test_a_server_impersonating_ours_never_gets_the_password(project, monkeypatch):
    impostor = Impostor()
    port = impostor.listen()
    monkeypatch.delenv("PGREQUIREAUTH", raising=False)
    env = environment.read_env("testing", {"POSTGRES_PASSWORD": "a-random-password"})

    class OursButTaken(servers.Provider):  # what inv believes: our server, on that port
        label = "local"

        def running(self):
            return port

    def connect_to_it():
        with servers.database_server(env, ready_timeout=2, provider=OursButTaken(env)):
            pass

    message = failure(connect_to_it)
    assert "authentication method requirement" in message, message
    received = b"".join(impostor.received)
    assert b"user\0postgres" in received  # it was reached, and asked
    assert b"a-random-password" not in received


def postmaster_on(socket: str) -> int:
    """The pid of the postgres listening in `socket`, found as any local user would: /proc."""
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argument = f"-cunix_socket_directories={socket}".encode()
            if argument in (proc / "cmdline").read_bytes().split(b"\0"):
                return int(proc.name)
    raise AssertionError(f"no postgres listening in {socket}")


def test_each_local_cluster_has_its_own_password_and_none_of_inv_s_environment(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "a-secret-of-inv-0123456789")
    env = environment.read_env("testing", {})
    provider = local.LocalProvider(env)
    account = local_files.server_account()
    bindir = local_template.reachable_binaries(local_template.find_server_binaries(), account)
    template = local_template.template_cluster(env, bindir, account)
    template_password = (template / "password").read_text().strip()
    passwords = []
    for _ in range(2):
        with provider.throwaway() as port:
            passwords.append(env["POSTGRES_PASSWORD"])
            postgres.connect(env, provider.host, port).close()
            with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
                with_template_s = {**env.vars, "POSTGRES_PASSWORD": template_password}
                postgres.connect(
                    dataclasses.replace(env, vars=with_template_s), provider.host, port
                )
            pid = postmaster_on(provider.host)
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert sorted(name.split(b"=")[0] for name in environ if name) == [b"LC_ALL", b"PATH"]
    assert len({*passwords, template_password}) == 3


def test_a_local_env_file_with_secrets_that_others_may_read_is_named(project, capsys):
    local_file = project / "env" / "production.local.env"
    local_file.write_text(f"SECRET_KEY={PRODUCTION['SECRET_KEY']}\nPOSTGRES_PASSWORD=pw\n")
    local_file.chmod(0o644)
    environment.read_env("production", {})
    warning = "env/production.local.env holds POSTGRES_PASSWORD, SECRET_KEY and others may read it"
    assert f"inv: {warning}: `chmod 600 env/production.local.env`" in capsys.readouterr().err
    local_file.chmod(0o600)
    environment.read_env("production", {})
    assert capsys.readouterr().err == ""
