"""The fast tier's per-test budget (tests/budget.py `FastTierBudget`, which tests/conftest.py
registers): a test that is not marked slow/integration/bench/torch and runs longer than the
budget fails the run, by name.

Each case runs a small pytest session (pytester) whose tests sleep past a tiny budget.
"""

from __future__ import annotations

import os

import pytest

from tests.budget import FAST_TEST_BUDGET_ENV, NOT_FAST_MARKS

pytest_plugins = ["pytester"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SLEEPERS = """
import time

import pytest


def test_quick():
    pass


{mark}
def test_sleeps_past_the_budget():
    time.sleep(0.6)
"""

#: The inner session registers the plugin the way tests/conftest.py's `pytest_configure` does.
INNER_CONFTEST = """
def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        from tests.budget import FastTierBudget

        config.pluginmanager.register(FastTierBudget.from_env(), "keras_se_fast_tier_budget")
"""

INI = "[pytest]\nmarkers =\n" + "".join(f"    {m}: a tier\n" for m in NOT_FAST_MARKS)


#: In process, the inner session also gets the hooks that time module/session fixtures.
INNER_CONFTEST_IN_PROCESS = INNER_CONFTEST.replace(
    "from tests.budget import FastTierBudget\n",
    "from tests.budget import FastTierBudget, SharedFixtureTimer\n\n"
    "        config.pluginmanager.register(SharedFixtureTimer())\n",
)
assert INNER_CONFTEST_IN_PROCESS != INNER_CONFTEST


def _run(pytester, monkeypatch, *, mark="", budget="0.3", tests=SLEEPERS):
    monkeypatch.setenv(FAST_TEST_BUDGET_ENV, budget)
    pytester.makeini(INI)
    pytester.makeconftest(INNER_CONFTEST_IN_PROCESS)
    pytester.makepyfile(test_inner=tests.format(mark=mark))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-n", "0")


def test_an_unmarked_slow_test_fails_the_run_by_name(pytester, monkeypatch):
    result = _run(pytester, monkeypatch)
    result.assert_outcomes(passed=2)  # every test passed, and still:
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*fast-tier budget*",
            "*longer than 0.3 s*",
            "*s test_inner.py::test_sleeps_past_the_budget",
        ]
    )
    assert "test_inner.py::test_quick" not in result.stdout.str()


@pytest.mark.parametrize("mark", NOT_FAST_MARKS)
def test_a_marked_slow_test_passes(pytester, monkeypatch, mark):
    result = _run(pytester, monkeypatch, mark=f"@pytest.mark.{mark}")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    assert "fast-tier budget" not in result.stdout.str()


SHARED_FIXTURE = """
import time

import pytest


@pytest.fixture(scope="{mark}")
def shared():
    time.sleep(0.6)


def test_first(shared):
    time.sleep(0.05)


def test_second(shared):
    pass
"""


@pytest.mark.parametrize("scope", ["module", "session"])
def test_a_shared_fixtures_setup_is_not_charged_to_its_first_user(pytester, monkeypatch, scope):
    result = _run(pytester, monkeypatch, mark=scope, tests=SHARED_FIXTURE)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()


def test_a_function_fixtures_setup_is_charged(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, mark="function", tests=SHARED_FIXTURE)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*s test_inner.py::test_first", "*s test_inner.py::test_second"])


def test_a_zero_budget_disables_the_check(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, budget="0")
    assert result.ret == pytest.ExitCode.OK


def test_a_bad_budget_is_a_usage_error(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, budget="fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{FAST_TEST_BUDGET_ENV} must be a number*'fast'*"])


def test_the_suite_registers_the_check(pytestconfig):
    """tests/conftest.py wires the plugin into this very run (on the xdist controller)."""
    if hasattr(pytestconfig, "workerinput"):
        pytest.skip("registered on the xdist controller, which this worker cannot see")
    plugin = pytestconfig.pluginmanager.get_plugin("keras_se_fast_tier_budget")
    assert plugin is not None and plugin.budget_s >= 0


@pytest.mark.slow
def test_the_check_sees_the_marks_of_xdist_workers_reports(pytester, monkeypatch):
    """Under ``-n 2`` (the suite's ``-n auto``) the reports reach the controller with their
    marks: the marked sleeper passes, the unmarked one fails the run."""
    monkeypatch.setenv(FAST_TEST_BUDGET_ENV, "0.3")
    monkeypatch.setenv("PYTHONPATH", ROOT)  # the controller imports tests.budget
    pytester.makeini(INI)
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(
        test_marked=SLEEPERS.format(mark="@pytest.mark.slow"),
        test_unmarked=SLEEPERS.format(mark=""),
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*fast-tier budget*", "*s test_unmarked.py::test_sleeps_past_the_budget"]
    )
    assert "test_marked.py::test_sleeps_past_the_budget" not in result.stdout.str()
