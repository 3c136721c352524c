"""Write notebooks/01–07 from the cell sources below (nbformat v4, outputs empty).

The notebooks are the product; this script is how their first version was written and how a reviewer reads them as
one file. Edit a notebook in JupyterLab or edit here and re-run (`python scripts/make_notebooks.py`): the script
overwrites all of them. A parameter set to None takes the value an earlier notebook of the same run_dir gave it. Every notebook: a title, a `parameters` cell (flat values, papermill overrides them), a cell
that builds the RunConfig, then markdown that says what the next call does and what to look at, then the call.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent

SETUP = """from ropd_kit import analysis, notebook_tools, pipeline, train
from ropd_kit.inspector import RubricInspector

notebook_tools.init_notebook()
# Values computed from the parameters live here, not in the parameters cell (papermill copies that cell's values).
params = notebook_tools.parameters(globals())
config = notebook_tools.run_config(params)  # + what earlier notebooks of this run_dir were given
notebook_tools.endpoint_table(config)"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_teacher_references"] = [
    ("md", """# 01 · Teacher references and student rollouts

ROPD starts from two kinds of answers to the same task: **teacher references** (K answers from the black-box teacher)
and a **group of student rollouts** (the current policy's samples). Notebook 02 induces a rubric from both.

In: tasks — the kit's JSONL, or any data set (GSM8K, MATH, multiple choice, conversations with reference rubrics;
a local file, a `save_to_disk` folder or a hub id). Each task's family (arithmetic, math, multiple_choice,
open_ended) picks the student's and teacher's prompts (`ropd_kit/prompts/`). Out, in `run_dir`: `tasks.jsonl`,
`teacher_refs.jsonl`, `rollouts.jsonl`, `config.json`. Endpoints are named by URL, model and the **name** of the
environment variable that holds the key — never the key: papermill copies these values into the executed notebook."""),
    ("params", """# Where this run's records go; notebooks 02-06 read it.
run_dir = "runs/notebooks"
# Tasks: the kit's JSONL, or a data set in another shape (detected from its columns): a local json/jsonl/parquet/csv
# file, a save_to_disk folder or a hub id.
tasks_path = "data/arith_train.jsonl"
tasks_split = None  # the data set's split (None: "train"; a local file is its own split)
tasks_subset = None  # a hub data set's config name
tasks_field_map = None  # our field -> the source's column, e.g. {"question": "stem", "answer": "gold"}
tasks_sample = None  # a seeded sample of this many rows, before n_tasks
n_tasks = 4  # the first n tasks are used
seed = 0
prompts_dir = None  # a folder of templates that replace ropd_kit/prompts/ by file name
# Teacher (black box). "local": the offline default, served by llama-server in this kernel.
teacher_base_url = "local"
teacher_model = "qwen2.5-coder-1.5b-instruct"
teacher_api_key_env = None  # NAME of the environment variable with the key, e.g. "OPENAI_API_KEY"
# Student sampler: the model notebook 04 trains.
student_base_url = "local"
student_model = "qwen2.5-coder-0.5b-instruct"
student_api_key_env = None
# Sizes
n_teacher_refs = 4
n_rollouts = 4
teacher_max_tokens = 384
rollout_max_tokens = 256"""),
    ("code", SETUP),
    ("md", """## Tasks
The task file is validated and the first `n_tasks` tasks are copied into the run directory. **Look at:** prompts and
answers read as intended; task ids are fingerprints of the prompt text, so they stay the same across runs."""),
    ("code", """tasks = pipeline.stage_tasks(config)
notebook_tools.records(config, "tasks")"""),
    ("md", """## Endpoints
`local` endpoints are served by llama-server, started once for this kernel and stopped when it exits (or by
`notebook_tools.stop_servers()`), so re-running a cell does not reload a model. **Look at:** the URL and model each
role calls."""),
    ("code", """endpoints = notebook_tools.resolve_endpoints(config, roles=("teacher", "student"))
notebook_tools.endpoint_table(endpoints)"""),
    ("md", """## Teacher references
`n_teacher_refs` answers per task, sampled at `teacher_temperature`. They are replayed from the reference index when
the same prompt and generation settings were seen before (no calls, whatever the URL). **Look at:** failed refs (left
out of the rubric, never replaced by an empty text) and how many refs reach the ground truth: the teacher's own
accuracy bounds what its rubrics can teach."""),
    ("code", """teacher_refs = pipeline.teacher_refs_stage(endpoints)
notebook_tools.teacher_refs_table(config)"""),
    ("md", """## Student rollouts
One group of `n_rollouts` samples per task from the student before training (step 0). **Look at:** groups where every
rollout is right, or every one wrong — the rubric must still separate them for GRPO to learn anything — and
truncated rollouts (they hit `rollout_max_tokens`)."""),
    ("code", """rollouts = pipeline.rollouts_stage(endpoints)
notebook_tools.rollouts_table(config)"""),
    ("md", """## One group, as the Rubricator will see it
The question, the teacher refs and the rollouts of the first task. Next: **02 · rubric induction**."""),
    ("code", """notebook_tools.example_group(config, 0)"""),
]

NOTEBOOKS["02_rubric_induction"] = [
    ("md", """# 02 · Rubric induction

For each task, the **Rubricator** reads the teacher refs and some of the group's rollouts and writes one rubric:
1–12 criteria, each with points 1–5 and a category. The same rubric then scores every rollout of the group
(cross-rollout sharing). Judging a group is one chain — induce the rubric, then verify every answer against it
blind — so this notebook runs that chain for every group (`pipeline.judge_stage`) and looks at the **rubrics**;
notebook 03 looks at the **verdicts and rewards**.

In: `run_dir` from 01. Out: `rubrics.jsonl`, `verdicts.jsonl`, `judge_raw.jsonl` (raw model output, for audits)."""),
    ("params", """run_dir = "runs/notebooks"
# Rubricator and Verifier (black box); "local" serves the offline default.
rubricator_base_url = "local"
rubricator_model = "qwen2.5-coder-1.5b-instruct"
rubricator_api_key_env = None
verifier_base_url = "local"
verifier_model = "qwen2.5-coder-1.5b-instruct"
verifier_api_key_env = None
# Rubric shape
max_criteria = 8
rubric_student_samples = 4  # how many of the group's rollouts the Rubricator sees
pitfalls = False  # allow negative 'pitfall' criteria (points -1/-2)
# False: call no model, inspect the rubrics and verdicts already in run_dir (a run judged earlier, a training run)
judge = True"""),
    ("code", SETUP),
    ("md", """## Judge every group
All groups are judged concurrently, bounded by each endpoint's `max_concurrency`. A group whose rubric or verdicts
cannot be obtained after retries is a **counted failure** (in training it gets zero advantage), never a silent 0.
With `judge = False` nothing is judged: the summary is read from the run directory's rubrics and verdicts.
**Look at:** `groups_failed`, `rubric_failures` and `mean_criteria`."""),
    ("code", """notebook_tools.judge_groups(config, judge)"""),
    ("md", """## The rubrics
One row per rubric: its size, total points, the categories used, and how many attempts the Rubricator needed (a reply
that does not parse is sent back with the reason). **Look at:** rubrics with an error, and rubrics of 1–2 criteria
(too coarse to separate rollouts)."""),
    ("code", """notebook_tools.rubric_sizes(config)"""),
    ("code", """notebook_tools.rubrics_table(config)"""),
    ("md", """## Rubric inspector
Choose a task: the question, the answers under the blind labels the Verifier saw (reveal who wrote what on demand),
the rubric with each criterion's teacher and rollout pass rates and its discrimination, and the verdict matrix. When
the tasks have a ground-truth answer, each criterion also shows its **agreement** with correctness (its verdict True
on a right rollout, False on a wrong one; n_labelled rollouts) and **correct_discrimination**, its pass rate on right
rollouts minus on wrong ones. Move a weight and the scores below follow.
**Look at:** *dead* criteria — met by every answer or by none — which cannot separate rollouts, criteria the
teacher refs fail (a rubric the teacher does not meet rewards something else than the teacher's behaviour), and
criteria with a negative correct_discrimination: they reward wrong answers."""),
    ("code", """inspector = RubricInspector(config.run_dir)
inspector"""),
    ("md", """The same rubric table as plain data (it is what the inspector shows for the selected task):"""),
    ("code", """inspector.rubric_table()"""),
]

NOTEBOOKS["03_verification_and_rewards"] = [
    ("md", """# 03 · Blind verification and rewards

The **Verifier** judged every answer of a group — teacher refs and rollouts shuffled together, labelled only by
position — against each criterion: one boolean per criterion where code checks the final answer against the
teacher's majority, and elsewhere (open-ended tasks, groups whose teacher references agree on no answer) the
probability that the criterion is met, read from the Verifier's token log-probabilities (`verifier_mode`, "auto" by
default). The score of a rollout is recomputed from those verdicts, never taken from a total the model
reports:

    s_i = Σ_k w_k · v_ik / (Σ_k w_k + ε)        (w_k: the criterion's points, v_ik: its verdict, 1/0 or P(true))

and GRPO's advantage within the group is `(s_i − mean) / (std + ε)` (`scale_rewards="group"`, the paper's form) or
`s_i − mean` (`"none"`, Dr.GRPO). In: `run_dir` after 02 (`rubrics.jsonl`, `verdicts.jsonl`). No model calls here."""),
    ("params", """run_dir = "runs/notebooks"
scale_rewards = "group"  # "group" (std-normalised, the paper) | "batch" | "none" (Dr.GRPO)
inspect_task = None  # a task id to open in the inspector (None: the first)"""),
    ("code", SETUP),
    ("md", """## Groups
Per group: the teacher refs' mean score (a rubric the teacher does not pass is suspect), the rollouts' mean and
spread, and whether the group carries a learning signal. **Look at:** groups with `signal == False` — all rollouts
scored the same, so every advantage is 0 and GRPO learns nothing from them."""),
    ("code", """notebook_tools.groups_table(config)"""),
    ("md", """## Rollouts: scores, advantages, correctness
One row per rollout. `correct` is checked against the ground truth, apart from any reward. **Look at:** wrong
rollouts with high scores and right ones with low scores — that is where the rubric and the truth disagree."""),
    ("code", """notebook_tools.rewards_table(config)"""),
    ("code", """notebook_tools.reward_figure(config)"""),
    ("md", """## Re-weight a rubric live
Move a criterion's slider and the rollouts' scores and advantages are recomputed (0 drops the criterion); export the
edited rubric as JSON. **Look at:** how much the advantages depend on one criterion, and whether dropping a dead or
mis-judged criterion changes who is ranked first."""),
    ("code", """inspector = RubricInspector(config.run_dir, task_id=inspect_task)
inspector"""),
    ("md", """The verdict matrix (answers in blind order × criteria) and the scores, as plain data:"""),
    ("code", """inspector.verdict_matrix()"""),
    ("code", """inspector.table()"""),
]

NOTEBOOKS["04_grpo_training"] = [
    ("md", """# 04 · Training the student

`train.train(config)` trains the student with LoRA for `max_steps` optimizer steps, each on `prompts_per_step` tasks
× `n_rollouts` rollouts, and writes one `train_log.jsonl` record per step with the same fields for every method:

- **ropd** — GRPO on rubric rewards: per group, one rubric from teacher refs + the group's rollouts, blind verdicts, s_i;
- **lopd** — on-policy distillation: per-token reverse KL to a white-box teacher (`lopd_teacher_model`);
- **rlvr** — GRPO on 1/0 correctness against the ground truth;
- **judge** — GRPO on the teacher's 0–10 grade of each rollout, no rubric;
- **sft** — supervised fine-tuning on the teacher refs.

Local judge endpoints are served for the run. Evaluation (pass@1 on `eval_tasks_path`) runs at step 0 and every
`eval_steps` steps, into `eval.jsonl`. In: `run_dir` (tasks, teacher refs). Out: `train_log.jsonl`, `eval.jsonl`,
LoRA checkpoints; ropd also appends each step's rollouts, rubrics and verdicts (the inspector can replay any step)."""),
    ("params", """run_dir = "runs/notebooks"
method = "ropd"  # ropd | lopd | rlvr | judge | sft
# None: as set in an earlier notebook of this run_dir (01's student, group size and token budget).
student_model = None
n_rollouts = None
rollout_max_tokens = None
lopd_teacher_model = "qwen2.5-coder-1.5b-instruct"  # white-box teacher of lopd (same tokenizer as the student)
max_steps = 4
prompts_per_step = 2
learning_rate = 1e-5
eval_tasks_path = "data/arith_test.jsonl"  # any source tasks_path takes
eval_tasks_split = None  # None: "test"
eval_tasks_field_map = None  # as tasks_field_map
eval_steps = 2
n_eval_tasks = 8
resume = False  # True: continue from the last checkpoint of this run_dir"""),
    ("code", SETUP),
    ("md", """## Train
**Look at:** the backend line (`transformers` on CPU, `unsloth` on a GPU) and, for ropd/judge, judge failures: a
run stops when the failure rate passes `max_judge_failure_rate`."""),
    ("code", """result = train.train(config)
notebook_tools.train_summary(result)"""),
    ("md", """## The train log
**Look at:** `reward_mean` rising while `reward_std` stays above 0 (groups still separate); `judge_failures`; the
judge cost per step (`judge_calls`, and `judge_usd` with `usd_<role>` when an endpoint has a price table)."""),
    ("code", """notebook_tools.train_log_table(config)"""),
    ("code", """notebook_tools.train_log_figure(config)"""),
    ("md", """## Accuracy against the ground truth
pass@1 at each evaluated step, with the samples seen and wall time spent to get there (what 06 compares across
methods). Empty when the run evaluates nothing (`eval_steps = None`, as in `make demo`'s one step)."""),
    ("code", """from ropd_kit.train.evaluate import eval_curve

eval_curve(config.run_dir)"""),
    ("md", """## After training: the trained student
The LoRA adapter is the run's last checkpoint, `<run_dir>/checkpoints/checkpoint-<step>/` (`adapter_config.json`
names the base model it belongs to). `after.load_trained` loads it onto that base and merges it into the weights
(`step=` picks an earlier checkpoint); `after.chat` asks it anything (a Task gets the prompt it was trained with).
To ship it without peft, `after.save_merged(student, f"{config.run_dir}/merged")` writes a plain transformers folder
(safetensors, config, tokenizer). **Look at:** whether it answers the way its training rewarded."""),
    ("code", """from ropd_kit.train import after

student = after.load_trained(config.run_dir)
after.chat(student, "A shop sells pens at 3 dollars each. How much do 4 pens cost?", max_new_tokens=128)"""),
]

NOTEBOOKS["05_signal_alignment_auc"] = [
    ("md", """# 05 · Is the reward aligned with correctness? (ROC AUC)

A reward is only useful if it ranks right answers above wrong ones. For every judged rollout we have its ground-truth
correctness and three signals:

- **score** — the rubric reward s_i (from `verdicts.jsonl`);
- **logprob** — the mean token log-prob of the rollout under a white-box teacher (what logit distillation follows);
- **judge** — the teacher's own 0–10 grade of the rollout, no rubric (teacher-as-judge, via the verifier endpoint).

The ROC AUC of each signal against correctness says how well it separates right from wrong (0.5: chance). The paper
reports rubric ≈ 0.90 against logits ≈ 0.35 with large models; small local models give weaker numbers. An AUC needs
both right and wrong rollouts: with one class it is *undefined*, not a number.

Correctness is checked by each task's family (a number, math-verify, the chosen letter). **Open-ended** tasks have
none: their rollouts are graded against the task's reference rubric by the Verifier (`reference_score`, 0–1), and a
rollout counts as right when its score reaches `score_threshold`. `spearman` ranks each signal against the score
itself (or correctness as 1/0), with no threshold."""),
    ("params", """run_dir = "runs/notebooks"
signals = ["score", "logprob", "judge"]
lopd_teacher_model = None  # the white-box teacher of the logprob signal (None: as in 04)
signal_step = None  # None: every judged step (02 and, for ropd, training); or one step
max_rollouts = 64  # a seeded subset keeps a CPU run short
score_threshold = 0.5  # open-ended tasks: a rollout is right when its reference-rubric score reaches this"""),
    ("code", SETUP),
    ("md", """## Signals per rollout
**Look at:** rows with a missing signal (a failed judgement is missing, not 0) and whether `correct` (or, for
open-ended tasks, `reference_score`) has both right and wrong rollouts."""),
    ("code", """frame = notebook_tools.signal_table(config, signals, step=signal_step, max_rollouts=max_rollouts)
frame.drop(columns=["prompt", "text"])"""),
    ("md", """## ROC AUC
Saved to `signal_auc.jsonl` in the run directory (the batch report collects it). **Look at:** `n_pos`/`n_neg` (a few
rollouts make a noisy AUC), `note`, and `label` (what counted as right: `correct`, or `reference_score >=
score_threshold`)."""),
    ("code", """auc = analysis.signal_auc(frame, signals, score_threshold=score_threshold)
notebook_tools.save_table(config, "signal_auc", auc)
auc"""),
    ("code", """analysis.roc_figure(frame, signals, score_threshold=score_threshold)"""),
]

NOTEBOOKS["06_efficiency"] = [
    ("md", """# 06 · Efficiency across runs

Accuracy against **samples seen** and against **wall time**, one line per run, one colour per method: the paper's
claim is that ROPD reaches a given accuracy with fewer samples than logit distillation. The table gives, per method,
the samples and seconds needed to reach a target accuracy and the ratio to the baseline method. **Mimicry** — the
student's rollouts scored by the teacher (mean token log-prob) across training, beside accuracy — shows whether a
method improves by imitating the teacher's wording or by getting answers right.

For a run evaluated on open-ended tasks there is no pass@1: its curve is the mean reference-rubric score (the
`metric` column says which a run shows).

In: the run directories to compare (by default the runs of this batch, or the sibling run directories), each with
`train_log.jsonl` and `eval.jsonl` from 04."""),
    ("params", """run_dir = "runs/notebooks"
compare_runs = None  # a glob or a list of run directories; None: this batch's runs / sibling run directories
target_accuracy = None  # None: the best accuracy that every method reaches
baseline = "ropd"  # ratios are "how many times the baseline's cost"
lopd_teacher_model = None  # scores the rollouts for mimicry (None: as in 04)
mimicry_max_per_step = 8  # rollouts scored per step and run; 0 skips mimicry"""),
    ("code", SETUP),
    ("md", """## The runs
**Look at:** every run you expect is listed (a run without `eval.jsonl` is named below and left out of the curves)."""),
    ("code", """runs = notebook_tools.find_runs(config.run_dir, compare_runs)
efficiency = notebook_tools.efficiency(runs)
efficiency"""),
    ("md", """## Accuracy vs samples seen, and vs wall time
**Look at:** where the curves cross the target line; wall time includes judging (ropd, judge) and the teacher's
forward passes (lopd)."""),
    ("code", """analysis.efficiency_figure(efficiency, "samples_seen", target=target_accuracy)"""),
    ("code", """analysis.efficiency_figure(efficiency, "wall_s", target=target_accuracy)"""),
    ("md", """## Samples to reach the target
`samples_vs_<baseline>` > 1 means the method needed that many times the baseline's samples. `outcome`: "not
reached" — the method never got there in this run (train longer); "not measurable at this size" — it was there
before training, so the run says nothing about what reaching it costs (more steps, more evaluation tasks)."""),
    ("code", """notebook_tools.target_table(efficiency, target_accuracy, baseline)"""),
    ("md", """## Mimicry
Mean teacher log-prob of each step's rollouts (solid) beside accuracy (dotted). Saved to `mimicry.jsonl`. **Look
at:** lopd pulls the log-prob up by construction; a method whose accuracy rises without it learned the answers, not
the teacher's phrasing."""),
    ("code", """mimicry = notebook_tools.mimicry(runs, config, max_per_step=mimicry_max_per_step)
notebook_tools.save_table(config, "mimicry", mimicry)
mimicry"""),
    ("code", """analysis.mimicry_figure(mimicry)"""),
]


FIDELITY_SETUP = """from ropd_kit import notebook_tools
from ropd_kit.fidelity import study as fidelity
notebook_tools.init_notebook()
params = notebook_tools.parameters(globals())
config = notebook_tools.run_config(params)  # run_dir is the study's folder
study = notebook_tools.fidelity_study(config, bank=bank_file, variants=variants, signals=signals, n_boot=n_boot,
                                       reference_only=reference_only)
notebook_tools.endpoint_table(study.run_config())"""

NOTEBOOKS["07_reward_fidelity"] = [
    ("md", """# 07 · Reward fidelity: does the rubric reward follow correctness?

ROPD only works if its reward ranks a right rollout above a wrong one. This notebook measures that on a **bank** of
student rollouts with ground-truth labels, for each **reward variant** (a set of RunConfig levers: one Verifier call
per answer, read-first, evidence quotes, self-consistency, the consensus check, ...), beside two reference signals:
the teacher's log-prob of the rollout (what logit distillation follows) and the teacher's own grade
(teacher-as-judge). It runs the same steps as `python -m ropd_kit.fidelity --tasks ... --out ...`.

With `bank_file` set, the bank is a **labelled bank** instead: prompts with answers someone labelled (1/0, or a
graded score; our JSONL with flaw kinds, preference pairs, or sets with scores — `ropd_kit.fidelity.banks`). Each
prompt's answers are judged as one group beside the teacher's references, exactly as training judges rollouts, and
prompts with a reference rubric are judged under it too, so the loss can be split between the teacher, the
Rubricator and the Verifier. This is the check to run before trusting a judge on your own tasks
(`python -m ropd_kit.fidelity --bank ... --out ...`).

Out, in `run_dir`: `bank/` (tasks, teacher refs, rollouts: a run directory), `variants/<name>/` (each variant's
rubrics and verdicts: a run directory the inspector opens), `fidelity.json` and `fidelity.html`.
Any RunConfig field can be passed as a parameter too (endpoints, token budgets); it applies to every variant.
Ground truth measures the reward here; it never enters it."""),
    ("params", """# The study's folder: bank/, variants/<name>/, fidelity.json, fidelity.html
run_dir = "runs/fidelity"
# Tasks with ground truth (a JSONL file, or anything ropd_kit.sources.load_task_source reads); the first n_tasks.
tasks_path = "data/arith_easy_test.jsonl"
# Or a labelled bank judged instead of student rollouts (its first n_tasks prompts), e.g.
# "data/open_contrast_test.jsonl"; None: rollouts of tasks_path.
bank_file = None
# A labelled bank with reference rubrics: judge it under those alone (the Verifier's own AUC), without inducing
# rubrics. Several times quicker; the whole-chain rows and the loss split stay empty.
reference_only = False
n_tasks = 40
n_rollouts = 8  # one group per task: n_tasks x n_rollouts rollouts in the bank
seed = 0
# Reward variants (ropd_kit.fidelity.variants): base (RunConfig's defaults), no_result_share, no_consensus,
# per_answer, read_first, evidence, sc3, sc5, few_criteria, soft, field=value; "a+b" combines two. "base" and
# "no_result_share" add the default consensus check to "no_consensus" and are derived from its replies: the three
# cost one judging.
variants = ["base", "no_result_share", "no_consensus"]
signals = ["logprob", "judge"]  # reference signals; [] for none
n_boot = 2000  # bootstrap draws (tasks resampled) per interval"""),
    ("code", FIDELITY_SETUP),
    ("md", """## The bank
Tasks, `n_teacher_refs` teacher references per task and one group of `n_rollouts` student rollouts per task, through
the kit's own stages (replayed from the reference index and the LLM cache when run again). **Look at:** `right`
per task — a group whose rollouts are all right or all wrong gives no within-group pair — and `teacher_competent`
(a strict majority of the teacher's refs right): a reward distilled from a teacher cannot beat the teacher."""),
    ("code", """bank = notebook_tools.fidelity_bank(study)
notebook_tools.bank_table(bank)"""),
    ("md", """## Judging the bank under each variant
Every group is judged as training judges it: one rubric from the teacher refs and the group, then blind verdicts.
Variants with the same rubric settings replay the same rubrics from the cache and differ only in verification.
A labelled bank's prompts with a reference rubric are judged again under it by each variant's Verifier
(`reference/<name>/`). **Look at:** the progress bars' failures; each variant's folder under `variants/` is a run
directory."""),
    ("code", """judged = notebook_tools.fidelity_judge(study, bank)"""),
    ("md", """## Reference signals
The teacher-as-judge grade (through the `judge_role` endpoint, the Verifier's by default) and the mean token
log-prob under the white-box teacher `lopd_teacher_model` (transformers, in this kernel; slow on a CPU)."""),
    ("code", """signals_ = notebook_tools.fidelity_signals(study, bank)"""),
    ("md", """## ROC AUC with task-bootstrap intervals
Per signal: the **pooled** AUC (right vs wrong rollouts of all tasks) and the **within-group** AUC (right vs wrong
rollouts of the same prompt: what GRPO's group-centred advantages see), with 95% intervals that resample tasks, and
the same per teacher-competence stratum. Beside each variant's reward, where the consensus check decided answers:
its **Verifier-decided part** (the score without the criterion code decided) and the **check alone**. **Look at:**
`n_pos`/`n_neg`, intervals that include 0.5, `tied pairs` (a judge that gives a whole group the same score ranks
nothing), a pooled AUC far above the within-group one (the signal tells easy tasks from hard ones, not right from
wrong), and a reward whose ranking is the check's while its Verifier part sits at 0.5."""),
    ("code", """result = notebook_tools.fidelity_result(study)
fidelity.summary_table(result)"""),
    ("code", """fidelity.fidelity_figure(result)"""),
    ("md", """## Variants: cost and failures
**Look at:** groups that could not be judged, `zero-spread groups` (TRL's `frac_reward_zero_std`: groups whose
rewards are all equal teach nothing), the share of answers the consensus check decided, judge time and tokens per
scored answer (Rubricator + Verifier, replayed calls included) and how often the rubric's final-result criterion
names the right value. `rubric: reference` rows are the judgings under the reference rubrics."""),
    ("code", """fidelity.variant_table(result)"""),
    ("md", """## Per flaw kind (labelled banks that name kinds)
Each kind of flawed answer against the good answers of the same prompt. **Look at:** the kinds near 0.5 — a judge
can catch harmful advice and still miss a flipped key statement of the same length."""),
    ("code", """fidelity.kind_table(result)"""),
    ("md", """## Which link loses it: teacher, Rubricator or Verifier (prompts with a reference rubric)
The Verifier alone under the reference rubric against the whole chain under the induced one; the teacher's
references scored under the reference rubric beside the good and the flawed answers (`P(ref > good)` well below
0.5: the rubric is induced from answers weaker than the good ones); the share of criteria whose verdicts separate
good from flawed answers, induced and reference. **Look at:** a high Verifier AUC with a low chain AUC (the rubric
loses it), or a low Verifier AUC (the Verifier does)."""),
    ("code", """fidelity.loss_table(result)"""),
    ("md", """## Where the link is lost: criteria by category
For the first variant: per criterion category, how often the verdict equals correctness (`agreement`) and the pass
rate on right minus on wrong rollouts (`discrimination`; negative rewards wrong answers). `fidelity.json` has the
same per variant and per teacher-competence stratum. **Look at:** the result category (final answer) first."""),
    ("code", """fidelity.criteria_table(result, study.variants[0])"""),
    ("md", """## One group at a time
The rubric inspector on the first variant's folder: each criterion's agreement with correctness in the selected
group, the verdict matrix, live re-weighting."""),
    ("code", """from ropd_kit.inspector import RubricInspector

RubricInspector(study.judged_path(study.variants[0]))"""),
]


def build(name: str, cells: list[tuple[str, str]]):
    nb = new_notebook()
    for kind, source in cells:
        if kind == "md":
            nb.cells.append(new_markdown_cell(source))
        elif kind == "params":
            nb.cells.append(new_code_cell(source, metadata={"tags": ["parameters"]}))
        else:
            nb.cells.append(new_code_cell(source))
    nb.metadata = {
        # The kernel `make venv` registers: JupyterLab opens the notebooks on the venv that has ropd_kit.
        "kernelspec": {"name": "ropd-kit", "display_name": "ropd-kit (.venv)", "language": "python"},
        "language_info": {"name": "python"},
    }
    # Stable cell ids keep `git diff` quiet when the script is re-run.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"
    return nb


def main() -> int:
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = build(name, cells)
        nbformat.validate(nb)
        nbformat.write(nb, out / f"{name}.ipynb")
        print(out / f"{name}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
