"""`python -m ropd_kit.fidelity`: the reward-fidelity study from the command line (see `fidelity.study`).

    python -m ropd_kit.fidelity --tasks data/arith_easy_test.jsonl --out reports/fidelity/arith_easy \\
        --variants base,no_result_share,no_consensus --signals logprob,judge
    python -m ropd_kit.fidelity --bank data/open_contrast_test.jsonl --out reports/fidelity/open_contrast \\
        --variants base,verifier_mode=soft

Builds (or replays) the bank in OUT/bank — student rollouts of --tasks, or the labelled answers of --bank (judged
in the rollouts' place beside the teacher's references; `fidelity.banks` lists the shapes) —, judges it under each
variant (and, for prompts with a reference rubric, under that rubric too), computes the reference signals, writes
OUT/fidelity.json and OUT/fidelity.html, and prints the summary tables. `--summarise-only` re-reads what OUT holds
and writes the summary again without calling any model. `--reference-only` judges a labelled bank under its
reference rubrics alone (the Verifier's own AUC), skipping rubric induction and the whole-chain judging.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .variants import VARIANTS

MODEL_FIELDS = ("teacher_model", "rubricator_model", "verifier_model", "student_model", "lopd_teacher_model")


def _set_value(text: str) -> tuple[str, Any]:
    import yaml

    field, sep, value = text.partition("=")
    if not sep or not field.strip():
        raise argparse.ArgumentTypeError(f"--set takes FIELD=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return field.strip(), parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ropd_kit.fidelity",
        description="Reward fidelity: ROC AUC (pooled and within-group, task-bootstrap 95% intervals) of the rubric "
                    "reward of each variant, the teacher log-prob and teacher-as-judge against correctness, on a "
                    "bank of student rollouts; per criterion category, result criterion, failures and judge tokens, "
                    "all split by teacher competence.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--tasks", help="task file or data set (what data.load_tasks / sources.load_task_source "
                                        "read: the kit's JSONL, json/csv/parquet, a save_to_disk folder, a hub id); "
                                        "student rollouts of them are judged")
    source.add_argument("--bank", help="a labelled bank: prompts with answers and their labels (1/0 or graded), "
                                       "judged instead of student rollouts. Shapes: ours (JSONL: a task's fields and "
                                       "answers [{text, label, kind}]), pairs (prompt, chosen, rejected), sets "
                                       "(prompt, responses/completions, scores/ratings/labels, preference or "
                                       "ranking); .jsonl, .json, .csv, .parquet, a save_to_disk folder or a hub id")
    parser.add_argument("--out", required=True, help="study folder: bank/, variants/, fidelity.json, fidelity.html")
    parser.add_argument("--n-tasks", type=int, default=40, help="the first N tasks, or prompts of a bank (0: all)")
    parser.add_argument("--n-rollouts", type=int, default=8, help="student rollouts per task (one group); a bank's "
                                                                  "prompts keep all their answers")
    parser.add_argument("--variants", default="base",
                        help=f"comma-separated reward variants; known: {', '.join(VARIANTS)}; combine with '+' "
                             "(consensus+sc3), or FIELD=VALUE of RunConfig")
    parser.add_argument("--signals", default=None,
                        help="reference signals: logprob (white-box teacher), judge (teacher-as-judge); 'none'. "
                             "Default: logprob,judge for --tasks, judge for --bank")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap draws (tasks resampled)")
    parser.add_argument("--split", default=None, help="split of a hub data set (RunConfig tasks_split)")
    parser.add_argument("--subset", default=None, help="config name of a hub data set (RunConfig tasks_subset)")
    parser.add_argument("--model", default=None,
                        help="one model for every role (teacher, Rubricator, Verifier, student, white-box teacher), "
                             "e.g. smollm2-135m-instruct for a smoke run")
    parser.add_argument("--set", dest="params", action="append", type=_set_value, default=[], metavar="FIELD=VALUE",
                        help="any RunConfig parameter (flat names as in a notebook: verifier_max_tokens=512, "
                             "teacher_base_url=..., teacher_api_key_env=OPENAI_API_KEY, tasks_sample=200, "
                             "tasks_field_map={question: stem}); repeatable")
    parser.add_argument("--reference-only", action="store_true",
                        help="a labelled bank with reference rubrics: judge it under those only (the Verifier "
                             "alone), without inducing rubrics; several times quicker, no whole-chain AUC")
    parser.add_argument("--summarise-only", action="store_true",
                        help="no model calls: summarise what OUT already holds (its study.json, bank and variants)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def study_from_args(args: argparse.Namespace):
    from .study import StudyConfig

    if args.summarise_only and not (args.tasks or args.bank):
        return StudyConfig.load(args.out)
    if not (args.tasks or args.bank):
        raise SystemExit("--tasks or --bank is required (unless --summarise-only finds OUT/study.json)")
    params: dict[str, Any] = {field: args.model for field in MODEL_FIELDS} if args.model else {}
    params.update({k: v for k, v in (("tasks_split", args.split), ("tasks_subset", args.subset)) if v is not None})
    params.update(dict(args.params))
    signals = args.signals if args.signals is not None else ("judge" if args.bank else "logprob,judge")
    return StudyConfig(
        tasks=args.tasks, bank=args.bank, out=args.out, n_tasks=args.n_tasks or None, n_rollouts=args.n_rollouts,
        variants=args.variants.split(","), signals=signals.split(","), seed=args.seed, n_boot=args.n_boot,
        params=params, reference_only=args.reference_only,
    )


def print_summary(result: dict, out: str) -> None:
    import pandas as pd

    from .study import FIDELITY_HTML, FIDELITY_JSON, kind_table, loss_table, summary_table, variant_table

    bank = result["bank"]["by_stratum"]["all"]
    labelled = result["bank"].get("labelled")
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 60):
        if labelled:
            kinds = ", ".join(f"{k} {n}" for k, n in labelled["kinds"].items()) or "none named"
            print(f"\nbank: {labelled['n_answers']} labelled answers ({labelled['labels']} labels) to "
                  f"{labelled['n_prompts']} prompts from {labelled['source']}; kinds: {kinds}; "
                  f"{labelled['n_prompts_with_reference_rubric']} prompts with a reference rubric")
        else:
            print(f"\nbank: {bank['n']} labelled rollouts on {bank['n_tasks']} tasks: {bank['n_pos']} right, "
                  f"{bank['n_neg']} wrong; {bank['n_groups_mixed']} of {bank['n_groups']} groups hold both; "
                  f"teacher competent on {result['bank']['n_tasks_teacher_competent']} tasks, not on "
                  f"{result['bank']['n_tasks_teacher_not_competent']}")
        for name, second in (("independent label", result["bank"].get("independent_label")),
                             ("the kit's answer check vs the labels", result["bank"].get("answer_check_vs_labels"))):
            if second and second.get("n_checked"):
                print(f"{name} ({second['check']}): disagrees on {second['n_disagree']} of {second['n_checked']} "
                      f"checkable answers")
        print("\n" + summary_table(result).to_string(index=False))
        print("\n" + variant_table(result).to_string(index=False))
        for table in (kind_table(result), loss_table(result)):
            if len(table):
                print("\n" + table.to_string(index=False))
        timings = ", ".join(f"{k} {v:.0f}" for k, v in result.get("timings", {}).items())
        print(f"\nwall seconds: {timings}")
    print(f"\n{out}/{FIDELITY_JSON}\n{out}/{FIDELITY_HTML}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from .study import run_study, summarise_study

    try:
        study = study_from_args(args)
        if study.labelled and not args.summarise_only:
            from .study import read_labelled_bank

            read_labelled_bank(study)  # a bad row fails here, named, before any server starts
    except (ValidationError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.summarise_only:
        result = summarise_study(study)
    else:
        result = run_study(study, progress=not args.quiet)
    print_summary(result, study.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
