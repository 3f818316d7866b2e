"""The README and docs/ name only what exists: tasks and their options, variables, links."""

import re
from pathlib import Path

import pytest

import tasks
from steps import PROJECT

PAGES = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
# Code and settings where the project reads its variables.
READERS = [
    *PROJECT.glob("app/*.py"), *PROJECT.glob("steps/**/*.py"), PROJECT / "tasks.py",
    PROJECT / "gunicorn.conf.py", *PROJECT.glob("compose/*"), *PROJECT.glob("env/*.env"),
    *PROJECT.glob("tests/**/*.py"), *PROJECT.glob("benchmarks/*.py"), PROJECT / ".ci/run",
]  # fmt: skip
# Variables of other programs that the docs name: read by them, not by the project's code.
THIRD_PARTY = {"GUNICORN_CMD_ARGS", "PGPASSWORD", "COVERAGE_FILE", "FLASK_ENV", "DOCKER_HOST"}
INV = re.compile(r"(?:^|[`\s$(])inv ([a-z][a-z._-]*)([^`\n|#]*)")


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(task, its options) of each `inv TASK ...` in code spans and code blocks."""
    code = "\n".join(re.findall(r"```.*?```|`[^`\n]+`", text, re.S))
    found = []
    for name, rest in INV.findall(code):
        words = rest.split(" -- ")[0].replace("[", " ").replace("]", " ").replace("/", " ")
        found.append((name, [w.split("=")[0] for w in words.split() if w.startswith("-")]))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_inv_command_named_exists_with_its_options(page):
    for name, options in commands(page.read_text()):
        assert name in tasks.ns.task_names, f"{page.name}: no task `inv {name}`"
        task = tasks.ns[name]
        known = {
            f"-{n}" if len(n) == 1 else f"--{n}" for a in task.get_arguments() for n in a.names
        }
        assert set(options) <= known | {"--"}, (
            f"{page.name}: `inv {name}` has no {set(options) - known}"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_variable_named_is_one_the_code_reads(page):
    code = "\n".join(path.read_text(errors="replace") for path in READERS if path.is_file())
    spans = " ".join(re.findall(r"`([^`\n]+)`", page.read_text()))
    for variable in set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])\b", spans)):
        assert variable in code or variable in THIRD_PARTY, (
            f"{page.name}: {variable} is read nowhere"
        )


def anchors(page: Path) -> set[str]:
    """The section ids of a Markdown page, as GitHub and MyST make them."""
    titles = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", t.lower()).strip().replace(" ", "-") for t in titles}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: no section #{anchor} in {path}"
