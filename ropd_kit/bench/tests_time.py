"""`make test`'s time against its target, read from the JUnit XML the suite wrote (no new run).

In: `reports/tests/junit.xml`, which `make test` asks pytest to write, and the llama-server build time from the
build's stamp. Out: the tests by outcome, the suite's wall time as pytest measured it (collection included), the
slowest tests, and the suite plus the build against a time budget: 20 minutes on a 2-core CPU, so that a full
run before a commit or in CI stays something one waits for.

A test's time in the XML is its setup, call and teardown together, so a module or session fixture's cost lands on
the first test that uses it (the session llama-server on the first integration test, say).

Not counted, because nothing records them: creating `.venv`, installing Chromium and assembling SmolLM2.
docs/benchmarks.md gives them, measured. The suite's judge calls cache into temporary folders, so a warm `ROPD_CACHE` spares little
beyond the SmolLM2 transformers folder that the torch tests convert once.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

TESTS_TARGET_S = 20 * 60
OUTCOMES = ("failure", "error", "skipped")  # a <testcase> child element per outcome; none means passed


def _suite(path: Path) -> ET.Element:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not XML ({exc})") from None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        raise ValueError(f"{path}: no <testsuite> element; not a JUnit XML report")
    return suite


def _seconds(element: ET.Element, path: Path) -> float:
    value = element.get("time")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        tag = f"<{element.tag} name={element.get('name')!r} time={value!r}>"
        raise ValueError(f"{path}: {tag} is not a number") from None


def suite_time(junit: str | Path, *, build_s: float | None, target_s: float = TESTS_TARGET_S,
               slowest: int = 25) -> dict[str, Any]:
    """The suite `junit` reports, timed against `target_s` (the build included when `build_s` is known).

    Raises FileNotFoundError when the report does not exist and ValueError, naming the file, when it is not one."""
    path = Path(junit)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no JUnit XML report; `make test` writes it")
    suite = _suite(path)
    suite_s = _seconds(suite, path)
    outcomes = {"passed": 0, **{name: 0 for name in OUTCOMES}}
    cases = []
    for case in suite.iter("testcase"):
        kinds = {child.tag for child in case} & set(OUTCOMES)
        # A test that failed and then errored in teardown counts once, as its worst outcome.
        outcome = next((name for name in OUTCOMES if name in kinds), "passed")
        outcomes[outcome] += 1
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        cases.append({"test": test_id, "s": round(_seconds(case, path), 2), "outcome": outcome})
    cases.sort(key=lambda c: c["s"], reverse=True)
    total = None if build_s is None else round(suite_s + build_s, 1)
    green = outcomes["failure"] == outcomes["error"] == 0 and len(cases) > 0
    return {
        "inputs": {"from": str(path), "target_s": target_s, "build_s": build_s,
                   "not_counted": ["creating .venv", "installing Chromium", "assembling SmolLM2"]},
        "started": suite.get("timestamp"),
        "host": suite.get("hostname"),
        "tests": len(cases),
        "outcomes": outcomes,
        "suite_s": round(suite_s, 1),
        "slowest": cases[:slowest],
        "slowest_share": round(sum(c["s"] for c in cases[:slowest]) / suite_s, 3) if suite_s > 0 else None,
        "suite_plus_build_s": total,
        # A suite with a failure or an error is not the suite the budget is about: no verdict either way.
        "target_met": None if total is None or not green else total <= target_s,
    }
