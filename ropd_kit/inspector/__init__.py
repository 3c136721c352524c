"""Interactive rubric inspector (ROPD stages 3–5 seen from a notebook): one group's rubric, verdicts and rewards.

In: a run directory with tasks, teacher_refs, rollouts, rubrics and verdicts (what `pipeline.judge_stage` or a
training run writes). Out: an ipywidgets box, and the same state as plain values for scripts and tests.

For a chosen (task, step) it shows the question; the teacher refs and student rollouts under the blind labels the
Verifier saw ("Answer 3"), with the authors revealed on demand; the rubric with each criterion's teacher and
rollout pass rates and spread (`scoring.rubric_diagnostics`) and, when the task has a ground-truth answer, how each
criterion's verdicts follow correctness: agreement (True on a right rollout, False on a wrong one) with its n, and
the pass rate on right rollouts minus that on wrong ones (`fidelity.group_criterion_table`); the verdict matrix as a
heatmap; and one slider per criterion weight. Moving a slider recomputes the rewards (`scoring.weighted_score`)
and the GRPO advantages (`scoring.group_advantages`) live; 0 drops a criterion. `export_rubric(path)` writes the
edited rubric in the model-facing format, `{"criteria": [{"id", "text", "points", "category"}]}`.

- `state`: `InspectorState`, the plain methods (`select`, `set_weight`, `scores`, `advantages`, `table`,
  `rubric_table`, `criterion_agreement`), driven without a browser;
- `widgets`: `RubricInspector`, the same state with the ipywidgets view; the widgets only call the state.
"""

from .state import CORRECTNESS_COLUMNS, PITFALL_WEIGHT_RANGE, WEIGHT_RANGE, Answer, InspectorState
from .widgets import RubricInspector

__all__ = ["CORRECTNESS_COLUMNS", "PITFALL_WEIGHT_RANGE", "WEIGHT_RANGE", "Answer", "InspectorState",
           "RubricInspector"]
