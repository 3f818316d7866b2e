"""A pytest plugin that `inv test` loads first (`-p steps.pytest_early_imports`): it imports the
libraries app/ imports before pytest-cov starts coverage, so that their import code runs
untraced (coverage measures app/ only, and tracing the rest cost about 0.15 s of a small
run), with the garbage collector off while they load and their objects frozen after. The
app's own modules are imported later, under coverage, as before; nothing it does changes
what the tests see, only when the libraries load.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import re

import pytest

from steps import PROJECT

IMPORT = re.compile(r"^(?:from|import)\s+([A-Za-z_][\w.]*)", re.MULTILINE)
# The driver app/config.py gives every database URI: create_engine imports it on first use.
DRIVER = "sqlalchemy.dialects.postgresql.psycopg2"


def app_libraries() -> list[str]:
    """The modules app/ imports from outside itself (a line-start `import`/`from`), and the
    database driver."""
    names = {DRIVER}
    for path in (PROJECT / "app").rglob("*.py"):
        names.update(IMPORT.findall(path.read_text()))
    return sorted(name for name in names if name.split(".")[0] != "app")


def spreads_tests_over_workers(early_config) -> bool:
    """pytest-xdist's controller, which runs no test: its workers import what they need."""
    workers = getattr(early_config.known_args_namespace, "numprocesses", None)
    return bool(workers) and "PYTEST_XDIST_WORKER" not in os.environ


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """Before pytest-cov's own (tryfirst) implementation, which starts coverage."""
    if spreads_tests_over_workers(early_config):
        return (yield)
    gc.disable()
    try:
        for name in app_libraries():
            with contextlib.suppress(Exception):  # the app's import will say what is wrong
                importlib.import_module(name)
        gc.freeze()
    finally:
        gc.enable()
    return (yield)
