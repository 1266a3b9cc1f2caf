"""The fast tier's budget, a pytest plugin of this suite (registered by tests/conftest.py).

Apart from tests/conftest.py because it imports no Keras: tests/test_fast_tier_budget.py runs
inner pytest sessions that register it, and importing TensorFlow there cost ~7 s of CPU each.
"""

from __future__ import annotations

import os
import time

import pytest

#: The fast tier's per-test budget in seconds (setup + call), checked at the end of every run by
#: `FastTierBudget`: a test over it that is not marked slow/integration/bench/torch fails the
#: run. Tests are marked `slow` from 2 s (measured on 2 idle cores); the check allows 4x that,
#: because two xdist workers on two shared cores (CI, or a loaded machine) stretch a 2 s test to
#: 3-5 s, and a check that flakes gets switched off. A test that takes 8 s there is a real
#: offender. ``KERAS_SE_FAST_TEST_BUDGET_S`` overrides it (0 disables; docs/development.md).
FAST_TEST_BUDGET_S = 8.0
FAST_TEST_BUDGET_ENV = "KERAS_SE_FAST_TEST_BUDGET_S"
#: Marks that take a test out of the fast tier (and so out of the budget).
NOT_FAST_MARKS = ("slow", "integration", "bench", "torch")


class FastTierBudget:
    """A pytest plugin: fails the run naming every unmarked test slower than ``budget_s``.

    Durations come from the setup and call reports (`pytest_runtest_logreport`), which under
    xdist reach the controller with the test's marks in ``report.keywords``; the verdict is
    given once, in `pytest_sessionfinish`, which turns a passing exit status into a failing one.
    """

    def __init__(self, budget_s):
        self.budget_s = budget_s
        self.durations = {}
        self.exempt = set()
        self.offenders = []

    @classmethod
    def from_env(cls, default=FAST_TEST_BUDGET_S):
        raw = os.environ.get(FAST_TEST_BUDGET_ENV, "").strip()
        try:
            budget = float(raw) if raw else default
        except ValueError:
            raise pytest.UsageError(
                f"{FAST_TEST_BUDGET_ENV} must be a number of seconds (0 disables). Received: {raw!r}"
            ) from None
        return cls(budget)

    def pytest_runtest_logreport(self, report):
        if report.when not in ("setup", "call"):
            return
        seconds = report.duration
        if report.when == "setup":  # (the call report repeats the item's user_properties)
            seconds -= sum(v for k, v in report.user_properties if k == SHARED_SETUP_PROPERTY)
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + seconds
        if any(mark in report.keywords for mark in NOT_FAST_MARKS):
            self.exempt.add(report.nodeid)

    def pytest_sessionfinish(self, session, exitstatus):
        if self.budget_s <= 0 or exitstatus not in (
            pytest.ExitCode.OK,
            pytest.ExitCode.TESTS_FAILED,
        ):
            return
        self.offenders = sorted(
            (seconds, nodeid)
            for nodeid, seconds in self.durations.items()
            if nodeid not in self.exempt and seconds > self.budget_s
        )
        if self.offenders:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if not self.offenders:
            return
        terminalreporter.section("fast-tier budget", sep="=", red=True, bold=True)
        terminalreporter.line(
            f"{len(self.offenders)} test(s) not marked {'/'.join(NOT_FAST_MARKS)} took longer "
            f"than {self.budget_s:g} s (setup + call; {FAST_TEST_BUDGET_ENV} overrides, 0 "
            "disables): make them faster or mark them @pytest.mark.slow",
            red=True,
        )
        for seconds, nodeid in reversed(self.offenders):
            terminalreporter.line(f"{seconds:8.2f}s {nodeid}", red=True)


#: A test's setup report carries the seconds its module/session fixtures took to set up
#: (``report.user_properties``, which xdist sends to the controller): `FastTierBudget` does not
#: charge them to the test that happened to run first (under xdist, any of their users).
SHARED_SETUP_PROPERTY = "keras_se_shared_fixture_setup_s"


class SharedFixtureTimer:
    """A pytest plugin (every process, not path-scoped like conftest hooks, which a session
    fixture's setup would not reach): times module/session fixture setups and puts the sum on
    the setup report of the test that triggered them."""

    def __init__(self):
        self.seconds = 0.0

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        started = time.perf_counter()
        try:
            return (yield)
        finally:
            if fixturedef.scope != "function":
                self.seconds += time.perf_counter() - started

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        if call.when == "setup" and self.seconds:
            item.user_properties.append((SHARED_SETUP_PROPERTY, self.seconds))
        self.seconds = 0.0
        return (yield)
