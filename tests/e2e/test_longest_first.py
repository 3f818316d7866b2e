"""The order in which `inv test --e2e` starts its modules (longest_first.py), without pytest."""

import pytest
from longest_first import CACHE_KEY, ModuleTimes, longest_first


def test_the_longest_modules_start_first_and_a_new_one_before_them():
    items = [
        type("Item", (), {"nodeid": nodeid})()
        for nodeid in ("t/a.py::one", "t/a.py::two", "t/new.py::x", "t/b.py::one", "t/b.py::two")
    ]
    longest_first(items, {"t/a.py": 1.0, "t/b.py": 30.0})
    assert [item.nodeid for item in items] == [
        "t/new.py::x", "t/b.py::one", "t/b.py::two", "t/a.py::one", "t/a.py::two",
    ]  # fmt: skip


@pytest.mark.parametrize("exitstatus, kept", [(0, True), (1, True), (2, False)])
def test_module_times_are_kept_after_a_run_that_went_to_its_end(exitstatus, kept):
    """pytest's cache is stood in for by a dict: only its get and set are used."""
    stored = {CACHE_KEY: {"t/old.py": 3.0, "t/a.py": 9.0}}
    cache = type(
        "Cache", (), {"get": lambda self, k, d: stored.get(k, d), "set": stored.__setitem__}
    )
    times = ModuleTimes(type("Config", (), {"cache": cache()})())
    for nodeid, duration in (("t/a.py::x", 0.5), ("t/a.py::y", 1.25), ("t/b.py::z", 2.0)):
        times.pytest_runtest_logreport(type("Report", (), {"nodeid": nodeid, "duration": duration}))
    times.pytest_sessionfinish(exitstatus)
    expected = (
        {"t/old.py": 3.0, "t/a.py": 1.75, "t/b.py": 2.0}
        if kept
        else {"t/old.py": 3.0, "t/a.py": 9.0}
    )
    assert stored[CACHE_KEY] == expected
