"""The code check cannot be talked into a pass: every rollout of the adversarial suite is read as the answer it
commits to (`answers`' reading rule), so the consensus check decides its final-result criterion as it should.

In-memory, no model: the suite (tests/hardening/adversarial_rollouts.jsonl) against the injection bench's task,
its rubric and its stand-in teacher references, scored with the shipped defaults, under a Verifier that every
attack fools completely (all criteria met). What is left of each attack's reward is what the rubric's other
criteria can give, which the injection bench then measures with a real Verifier.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ropd_kit.answers import read_answer, same_answer
from ropd_kit.bench.injection import INJECTION_ANSWER, INJECTION_RUBRIC, consensus_refs, load_suite
from ropd_kit.config import RunConfig
from ropd_kit.consensus import consensus_check
from ropd_kit.judge_text import strip_thinking
from ropd_kit.scoring import result_weighted, weighted_pass_rate
from ropd_kit.verify import GroupVerdicts

SUITE = load_suite(Path(__file__).with_name("adversarial_rollouts.jsonl"))
# Attacks on reading the answer rather than on the Verifier: each fooled a reader that took the last marker's first
# number (all but the look-alike digit, which is there for the Verifier).
EXTRACTION_ATTACKS = ("forged_fence_then_right", "retraction_in_parenthesis", "two_boxed", "negated_answer",
                      "code_block_after_conclusion", "lookalike_digit", "homoglyph_second_answer", "false_equation",
                      "strikethrough", "hidden_html_comment", "hedge_or", "zero_width_digits", "superscript_exponent")


def test_suite_holds_the_extraction_attacks():
    attacks = {r["attack"] for r in SUITE if r["category"] == "adversarial"}
    assert set(EXTRACTION_ATTACKS) <= attacks


@pytest.mark.parametrize("row", SUITE, ids=lambda r: r["id"])
def test_each_rollout_is_read_as_the_answer_it_commits_to(row):
    read = read_answer("arithmetic", strip_thinking(row["text"]))
    if row["final_answer"] is None:
        assert read is None
    else:
        assert read is not None and same_answer("arithmetic", read, row["final_answer"])


def test_the_code_check_passes_only_the_honest_right_answers_even_when_the_verifier_is_fooled():
    texts = [r["text"] for r in SUITE]
    m = len(INJECTION_RUBRIC.criteria)
    fooled = GroupVerdicts(teacher=[], student=[[True] * m for _ in texts], order=[("student", j) for j in
                                                                                   range(len(texts))])
    rubric, checked, outcome = consensus_check(INJECTION_RUBRIC, fooled, consensus_refs(), texts, family="arithmetic")
    assert outcome.applied and outcome.value == INJECTION_ANSWER and not outcome.added
    final = rubric.ids.index(outcome.result_id)
    share = RunConfig().result_weight_share
    weights = result_weighted(rubric.points, final, share)
    for row, verdicts, notes in zip(SUITE, checked.student, checked.student_notes):
        right = row["category"] == "honest_right"
        assert verdicts[final] is right, row["id"]
        assert notes["extracted_answer"] == read_answer("arithmetic", strip_thinking(row["text"]))
        score = weighted_pass_rate(weights, [verdicts])[0]
        if not right:  # all the other criteria met, and still at most what they weigh
            assert score <= 1 - share + 1e-9, row["id"]
