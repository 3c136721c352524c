"""Reward fidelity: does the rubric reward follow correctness, where is the link lost, and which levers restore it?

ROPD replaces the teacher's logits with a rubric reward (Rubricator -> blind Verifier -> weighted pass rate). The
method only works if that reward ranks right rollouts above wrong ones. This subpackage holds the pure machinery of
the study that measures it on a bank of student rollouts with ground-truth labels, or on a labelled bank (answers
someone labelled per prompt):

- `stats`: pooled ROC AUC of each signal (rubric score per reward variant, teacher log-prob, teacher-as-judge) with
  a bootstrap interval that resamples tasks, not rollouts; the within-group AUC with its tied pairs (graded labels
  too); every number per stratum of teacher competence.
- `criteria`: per criterion category, how often the Verifier's verdict agrees with correctness and how well it
  separates right from wrong; whether each rubric's final-result criterion names the right value.
- `labels`: ground-truth correctness of each text, the teacher's competence per task, and a second, independent
  label's disagreement with the first.
- `banks`: labelled banks in the shapes people keep them (ours, preference pairs, scored sets), bad rows named.
- `decided`: the reward split into what the Verifier decided and what the consensus check did; groups whose rewards
  do not differ (TRL's frac_reward_zero_std).
- `links`: per flaw kind, and the loss split between teacher, Rubricator and Verifier under a reference rubric.

The levers it measures are part of the method and live with its stages: evidence and self-consistency in
`ropd_kit.levers`, the consensus check in `ropd_kit.consensus`; this subpackage only measures them.

Why the within-group AUC decides: GRPO centres rewards within each group (one prompt's rollouts at one step), so
only the order of rewards *inside* a group moves the policy. A signal can reach a high pooled AUC because easy tasks
get high scores and hard ones low, while inside each group it ranks wrong rollouts above right ones; training on it
then pushes the student the wrong way. The within-group AUC is P(a right rollout outscores a wrong rollout of the
same group), the probability that a GRPO comparison points toward correctness.

No LLM calls and no I/O here: plain records and pandas DataFrames in, dicts of Python numbers and DataFrames out.
The study driver that builds the bank and calls the judges is built on top of these functions.
"""

from .criteria import (
    agreement_table,
    criterion_verdicts,
    group_criterion_table,
    result_value_check,
    result_value_summary,
    same_value,
    verdict_coverage,
)
from .labels import label_correct, teacher_competence
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
    "agreement_table",
    "auc_with_ci",
    "criterion_verdicts",
    "group_criterion_table",
    "json_records",
    "label_correct",
    "rank_auc",
    "result_value_check",
    "result_value_summary",
    "same_value",
    "signal_summary",
    "split_by",
    "stratum_key",
    "summary_frame",
    "teacher_competence",
    "verdict_coverage",
    "within_group_auc",
]
