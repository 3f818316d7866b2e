"""`inv test --e2e`'s pytest plugin: the modules start longest first, by their last run's times."""

from __future__ import annotations

import collections

import pytest

CACHE_KEY = "inv/module-seconds"
SECONDS = pytest.StashKey[dict]()


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def longest_first(items: list, seconds: dict[str, float]) -> None:
    """`items` by their module's past seconds, most first; a new module first: it may be long."""
    items.sort(key=lambda item: -seconds.get(module_of(item.nodeid), float("inf")))


def pytest_configure(config):
    """The last run's times, read by the controller and handed to its workers."""
    if hasattr(config, "workerinput"):  # all sort alike, whatever another run writes meanwhile
        config.stash[SECONDS] = config.workerinput.get(CACHE_KEY, {})
        return
    cache = getattr(config, "cache", None)  # none with -p no:cacheprovider
    config.stash[SECONDS] = cache.get(CACHE_KEY, {}) if cache else {}
    # So that no long module starts while the others finish: xdist orders by number of tests.
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
    """Each module's seconds, in the controller, which hears every phase of every worker's tests."""

    def __init__(self, config: pytest.Config) -> None:
        self.config, self.measured = config, collections.Counter()

    def pytest_runtest_logreport(self, report):
        self.measured[module_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, exitstatus):
        if not self.measured or exitstatus not in (0, 1):  # kept from a whole run, green or not
            return
        seconds = self.config.cache.get(CACHE_KEY, {})
        seconds.update({module: round(total, 2) for module, total in self.measured.items()})
        self.config.cache.set(CACHE_KEY, seconds)
