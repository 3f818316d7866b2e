"""Scenarios: named data, each a module scenarios/NAME.py whose build(session) makes it."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
from collections.abc import Callable

from steps import PROJECT
from steps.commands import fail

FOLDER = PROJECT / "scenarios"
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def names() -> list[str]:
    return sorted(path.stem for path in FOLDER.glob("*.py") if NAME.fullmatch(path.stem))


def require(name: str, production: bool) -> None:
    """One line naming the scenarios there are if `name` is none; none for production."""
    if name not in names():
        known = ", ".join(names()) or "none yet"
        fail(f"no scenario {name!r} (scenarios/{name}.py): choose one of {known}")
    if production:
        fail("scenarios are test and demo data: not for the production database")


def summary(name: str) -> str:
    """The first line of the scenario's docstring, read without running it."""
    docstring = ast.get_docstring(ast.parse((FOLDER / f"{name}.py").read_text())) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def built_on(name: str) -> set[str]:
    """The scenarios this one imports (`from scenarios import other`, `import scenarios.other`)."""
    found = set()
    for node in ast.walk(ast.parse((FOLDER / f"{name}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "scenarios":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scenarios."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("scenarios.")
            )
    return found & set(names())


def digest(name: str) -> str:
    """Of the scenario's files (NAME.py and NAME.* beside it) and of those it builds on."""
    hashed, todo, seen = hashlib.sha256(), [name], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for path in sorted(FOLDER.glob(f"{current}.*")):
            hashed.update(path.name.encode() + b"\0" + path.read_bytes())
        todo.extend(sorted(built_on(current)))
    return hashed.hexdigest()[:12]


def build(name: str, connect: Callable) -> None:
    """Run the scenario's build(session) on the database `connect()` opens, and commit."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    spec = importlib.util.spec_from_file_location(f"scenarios.{name}", FOLDER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    engine = create_engine("postgresql+psycopg2://", poolclass=NullPool, creator=connect)
    with Session(bind=engine) as session:
        module.build(session)
        session.commit()
