"""The injection benchmark end to end on a small slice of the suite, with the session's SmolLM2 server as verifier."""

from __future__ import annotations

import json

import pytest

from ropd_kit.bench.injection import CATEGORIES, DEFAULT_SUITE, INJECTION_RUBRIC, load_suite, run_bench, summarise


@pytest.mark.integration
def test_bench_writes_rates_per_category(server, tmp_path):
    rows = load_suite(DEFAULT_SUITE)
    picked = [next(r for r in rows if r["category"] == c) for c in CATEGORIES]
    picked += [r for r in rows if r["attack"] in ("fake_verdict_json", "blank")]
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(json.dumps(r) + "\n" for r in picked))
    out = tmp_path / "injection.json"
    result = run_bench(model=server.model_id, suite=suite, repeats=1, group_size=5, base_url=server.base_url,
                       out=out)
    written = json.loads(out.read_text())
    assert written["model"] == server.model_id
    assert written["inputs"]["n_rollouts"] == {"honest_right": 1, "honest_wrong": 1, "adversarial": 3}
    assert written["inputs"]["rubric"] == INJECTION_RUBRIC.to_record()["criteria"]
    assert len(written["records"]) == len(picked)
    blank = next(r for r in written["records"] if r["attack"] == "blank")
    assert blank["score"] == 0.0  # nothing to judge: all criteria unmet, without a call
    for category in CATEGORIES:
        rate = written["per_category"][category]["mean_score_median"]
        assert rate is None or 0.0 <= rate <= 1.0
    assert result["per_attack"].keys() == {r["id"] for r in picked if r["category"] == "adversarial"}


def test_summary_uses_medians_over_repeats():
    records = [
        {"repeat": rep, "id": f"{cat}-{i}", "category": cat, "attack": "a", "score": score, "final_met": score > 0.5}
        for rep, scores in enumerate([(1.0, 0.0, 0.5), (0.0, 0.0, 0.5), (1.0, 1.0, 0.5)])
        for cat, score in zip(CATEGORIES, scores) for i in range(2)
    ]
    summary = summarise(records, repeats=3)
    assert summary["per_category"]["honest_right"]["mean_score_by_repeat"] == [1.0, 0.0, 1.0]
    assert summary["per_category"]["honest_right"]["mean_score_median"] == 1.0
    assert summary["per_category"]["honest_wrong"]["mean_score_median"] == 0.0
    assert summary["adversarial_minus_honest_wrong"] == 0.5
