"""Reward fidelity: does the rubric reward follow correctness, where is the link lost, and which levers restore it?

ROPD replaces the teacher's logits with a rubric reward (Rubricator -> blind Verifier -> weighted pass rate). The
method only works if that reward ranks right rollouts above wrong ones. This subpackage holds the pure machinery of
the study that measures it on a bank of student rollouts with ground-truth labels:

- `stats`: pooled ROC AUC of each signal (rubric score per reward variant, teacher log-prob, teacher-as-judge) with
  a bootstrap interval that resamples tasks, not rollouts; the within-group AUC; every number per stratum of
  teacher competence.
- `criteria`: per criterion category, how often the Verifier's verdict agrees with correctness and how well it
  separates right from wrong; whether each rubric's final-result criterion names the right value.
- `levers`: the pure parts of the reward levers: evidence (a verdict counts only if its quote occurs in the
  answer), self-consistency (majority per criterion over Verifier samples), and the consensus check (the final
  result decided by code against the teacher's majority answer; no ground truth).
- `labels`: ground-truth correctness of each text, and the teacher's competence per task.

Why the within-group AUC decides: GRPO centres rewards within each group (one prompt's rollouts at one step), so
only the order of rewards *inside* a group moves the policy. A signal can reach a high pooled AUC because easy tasks
get high scores and hard ones low, while inside each group it ranks wrong rollouts above right ones; training on it
then pushes the student the wrong way. The within-group AUC is P(a right rollout outscores a wrong rollout of the
same group), the probability that a GRPO comparison points toward correctness.

No LLM calls and no I/O here: plain records and pandas DataFrames in, dicts of Python numbers and DataFrames out.
The study driver that builds the bank and calls the judges is built on top of these functions.
"""

from .criteria import (
    RESULT_CATEGORIES,
    agreement_table,
    criterion_verdicts,
    find_result_criterion,
    group_criterion_table,
    is_result_criterion,
    named_value,
    result_value_check,
    result_value_summary,
    same_value,
    verdict_coverage,
)
from .labels import label_correct, teacher_competence
from .levers import (
    MIN_QUOTE_CHARS,
    LeverVerdicts,
    apply_consensus,
    apply_evidence,
    consensus_verdict,
    majority_per_criterion,
    normalize_text,
    quote_supported,
    teacher_consensus,
)
from .stats import (
    auc_with_ci,
    json_records,
    rank_auc,
    signal_summary,
    split_by,
    stratum_key,
    summary_frame,
    within_group_auc,
)

__all__ = [
    "MIN_QUOTE_CHARS",
    "RESULT_CATEGORIES",
    "LeverVerdicts",
    "agreement_table",
    "apply_consensus",
    "apply_evidence",
    "auc_with_ci",
    "consensus_verdict",
    "criterion_verdicts",
    "find_result_criterion",
    "group_criterion_table",
    "is_result_criterion",
    "json_records",
    "label_correct",
    "majority_per_criterion",
    "named_value",
    "normalize_text",
    "quote_supported",
    "rank_auc",
    "result_value_check",
    "result_value_summary",
    "same_value",
    "signal_summary",
    "split_by",
    "stratum_key",
    "summary_frame",
    "teacher_competence",
    "teacher_consensus",
    "verdict_coverage",
    "within_group_auc",
]
