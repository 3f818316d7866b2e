"""A pytest plugin that `inv test --e2e` loads when it spreads the suite over processes
(`-p tests.e2e.longest_first`): the modules start longest first, by the seconds each took
in the last run (kept in pytest's cache), so that no long module starts while the others
finish. pytest-xdist's own order, by number of tests, says little about time here: a
module of 7 end-to-end tests takes 30 s, one of 59 unit tests 1 s. No plugin we found
schedules by past times (pytest-split divides a suite between CI jobs, not between
xdist's processes).
"""

from __future__ import annotations

import collections

import pytest

CACHE_KEY = "inv/module-seconds"
SECONDS = pytest.StashKey[dict]()


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def longest_first(items: list, seconds: dict[str, float]) -> None:
    """`items` sorted by their module's past seconds, most first; a module without any (new
    since) goes first, in case it is long. Within a module the order is kept."""
    items.sort(key=lambda item: -seconds.get(module_of(item.nodeid), float("inf")))


def pytest_configure(config):
    """The last run's times, read once by the controller (its workers get them from it, so
    that all sort alike even if another run writes the cache meanwhile)."""
    if hasattr(config, "workerinput"):
        config.stash[SECONDS] = config.workerinput.get(CACHE_KEY, {})
        return
    cache = getattr(config, "cache", None)  # none with -p no:cacheprovider
    config.stash[SECONDS] = cache.get(CACHE_KEY, {}) if cache else {}
    if config.stash[SECONDS] and hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # the order sorted below, not xdist's
    if cache is not None:
        config.pluginmanager.register(ModuleTimes(config), "inv-module-times")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist, in the controller: what each worker starts with."""
    node.workerinput[CACHE_KEY] = node.config.stash[SECONDS]


def pytest_collection_modifyitems(config, items):
    if config.stash[SECONDS]:
        longest_first(items, config.stash[SECONDS])


class ModuleTimes:
    """In the controller, which hears every phase (setup, call, teardown) of every worker's
    tests: each module's seconds, kept after a run that went to its end (green or not)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config, self.measured = config, collections.Counter()

    def pytest_runtest_logreport(self, report):
        self.measured[module_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, exitstatus):
        if not self.measured or exitstatus not in (0, 1):
            return
        seconds = self.config.cache.get(CACHE_KEY, {})
        seconds.update({module: round(total, 2) for module, total in self.measured.items()})
        self.config.cache.set(CACHE_KEY, seconds)
