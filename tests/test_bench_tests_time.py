"""`make bench`'s tests_time: the JUnit report of a real pytest run timed against the 20-minute budget."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ropd_kit.bench import suite
from ropd_kit.bench.tests_time import TESTS_TARGET_S, suite_time

# A small suite with every outcome; the slow test sleeps in its fixture's setup, which the report counts with it.
SMALL_SUITE = '''
import time
import pytest

@pytest.fixture
def slow_setup():
    time.sleep(0.3)

def test_slow(slow_setup):
    pass

def test_fast():
    pass

def test_fails():
    assert 1 == 2

@pytest.mark.skip(reason="not here")
def test_skipped():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("setup broke")

def test_errors(broken):
    pass
'''


@pytest.fixture(scope="module")
def junit(tmp_path_factory) -> Path:
    """The JUnit XML pytest itself writes for SMALL_SUITE (a subprocess: no plugin of this session leaks in)."""
    root = tmp_path_factory.mktemp("small")
    (root / "test_small.py").write_text(SMALL_SUITE)
    report = root / "out" / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(root),
                    f"--junitxml={report}", str(root / "test_small.py")], cwd=root, capture_output=True, check=False)
    assert report.is_file()
    return report


def test_outcomes_slowest_and_the_target_come_from_the_report(junit):
    result = suite_time(junit, build_s=300.0)
    assert result["tests"] == 5
    assert result["outcomes"] == {"passed": 2, "failure": 1, "error": 1, "skipped": 1}
    slowest = result["slowest"][0]
    assert slowest["test"].endswith("test_slow") and slowest["s"] >= 0.3 and slowest["outcome"] == "passed"
    assert 0.3 <= result["suite_s"] < 120
    assert result["suite_plus_build_s"] == pytest.approx(result["suite_s"] + 300.0, abs=0.11)
    assert result["inputs"]["target_s"] == TESTS_TARGET_S == 1200
    assert result["target_met"] is None  # a suite with a failure and an error gets no verdict
    assert suite_time(junit, build_s=None)["suite_plus_build_s"] is None


def test_a_green_report_is_held_against_the_target_both_ways(junit, tmp_path):
    text = junit.read_text()
    # The same report with only its passing and skipped tests kept: green.
    tree = ET.parse(junit)
    suite_el = tree.getroot().find("testsuite")
    for case in list(suite_el.iter("testcase")):
        if case.find("failure") is not None or case.find("error") is not None:
            suite_el.remove(case)
    green = tmp_path / "green.xml"
    tree.write(green)
    assert "<failure" in text and "<failure" not in green.read_text() and "<error" not in green.read_text()
    result = suite_time(green, build_s=0.0)
    assert result["target_met"] is True
    suite_s = result["suite_s"]
    assert suite_time(green, build_s=TESTS_TARGET_S - suite_s + 1.0)["target_met"] is False


def test_a_missing_report_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="make test"):
        suite_time(tmp_path / "none.xml", build_s=0.0)


@pytest.mark.parametrize("text, message", [
    ("<testsuites><testsuite name='pytest' time='soon'/></testsuites>", r"bad\.xml.*time='soon'"),
    ("<testsuite name='pytest' time='1.0'><testcase name='test_x' time=''/></testsuite>",
     r"bad\.xml: <testcase name='test_x' time=''> is not a number"),
    ("not xml", r"bad\.xml: not XML"),
    ("<html/>", r"bad\.xml: no <testsuite>"),
], ids=["suite time", "case time", "not xml", "no testsuite"])
def test_a_broken_report_is_named(tmp_path, text, message):
    bad = tmp_path / "bad.xml"
    bad.write_text(text)
    with pytest.raises(ValueError, match=message):
        suite_time(bad, build_s=0.0)


def test_the_bench_writes_tests_time_and_its_headline_or_skips_without_a_report(junit, tmp_path):
    out = tmp_path / "bench"
    facts = {"cpus": 2, "llama_server": {"build_s": 293.0}}
    args = suite.parse_args(["--only", "tests_time", "--junit-from", str(junit)])
    written = suite.run_tests_time(out, facts, args)
    data = json.loads(written["tests_time"].read_text())
    assert data["machine"] == facts and data["inputs"]["build_s"] == 293.0
    rows = dict(suite.headline(out))
    assert rows["make test: s of pytest (5 tests)"] == data["suite_s"]
    assert rows["make test + llama-server build: s (target 1200)"] == data["suite_plus_build_s"]
    assert rows["make test: target met (no failure or error)"] == "no verdict"
    assert "make test + llama-server build" in suite.write_index(out).read_text()

    absent = suite.parse_args(["--only", "tests_time", "--junit-from", str(tmp_path / "absent.xml")])
    assert suite.run_tests_time(tmp_path / "bench2", facts, absent) == {}
    assert not (tmp_path / "bench2" / "tests_time.json").exists()
