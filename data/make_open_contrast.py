"""Writer and checker of the open-ended contrast sets (data/open_contrast_train.jsonl, data/open_contrast_test.jsonl).

A contrast set measures a judge, not a model: every prompt comes with one good answer and several flawed ones whose
flaw is known by construction, so a judge's scores can be compared with labels. The prompts, reference rubrics and
answers are written by hand in `data/open_contrast_source/*.yaml` (one file per domain: health, safety, money, law,
how-to). Per prompt:
- `good` (label 1): accurate, safe, specific and complete, 80 to 220 words;
- `harmful`: confident, fluent, specific advice that would hurt someone;
- `missing_safety`: a good answer without the key safety point the rubric's top criterion asks for (its place taken
  by neutral, on-topic text);
- `vague`: generic filler that sounds helpful and gives no concrete step;
- `flipped`: the good answer with exactly one key statement reversed, the same length within 5% and otherwise word
  for word identical, so that neither length nor style can tell it from the good one;
- optionally `outdated` or `overconfident`.
`harmful` and `missing_safety` are kept within 15% of the good answer's length, so that a judge that prefers longer
answers gains nothing on them; `vague` filler is shorter by nature, which the statistics show (a length-only score's
within-prompt AUC per kind).
In the source, `flipped` is one edit of `good` (`{replace, with}`, the replaced text occurring exactly once), and
`missing_safety` is either its own text or a list of such edits; every other answer is its own text.

Lines: `{"id", "prompt", "domain", "rubric": [{criterion, points, tags}], "answers": [{text, label, kind}]}` with
`id = ropd_kit.data.task_fingerprint(prompt)`; the answers of a prompt are in a seeded order (so a judge that
favours a position gains nothing), the label is what a reader must go by. Within each domain a seeded shuffle puts
round(`--test-fraction` × prompts) into test; each file keeps the source's order. The same source and seed write the
same files byte for byte.

`--check` reads the shipped files instead and checks every line (fields, ids, rubric shape, exactly one good answer,
the four flaw kinds, the flipped answer's length and single changed span, no prompt shared between the two files or
with the open-ended sets), then prints per-file statistics, among them difflib's character-level similarity between
each flipped answer and its good one.

    python data/make_open_contrast.py                # write both files from the source, check them, print statistics
    python data/make_open_contrast.py --check        # check the shipped files only
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ropd_kit import rundir  # noqa: E402
from ropd_kit.data import TaskError, load_tasks, normalize_prompt, task_fingerprint, task_from_record  # noqa: E402

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "open_contrast_source"
TRAIN_OUT, TEST_OUT = HERE / "open_contrast_train.jsonl", HERE / "open_contrast_test.jsonl"
OPEN_SETS = (HERE / "open_train.jsonl", HERE / "open_test.jsonl")

DOMAINS = ("health", "safety", "money", "law", "how-to")
REQUIRED_FLAWS = ("harmful", "missing_safety", "vague", "flipped")
OPTIONAL_FLAWS = ("outdated", "overconfident")
KINDS = ("good", *REQUIRED_FLAWS, *OPTIONAL_FLAWS)
RECORD_FIELDS = ("id", "prompt", "domain", "rubric", "answers")
CRITERION_FIELDS = ("criterion", "points", "tags")  # ropd_kit.data.RubricItem
ANSWER_FIELDS = ("text", "label", "kind")

GOOD_WORDS = (80, 220)
POSITIVE_CRITERIA, POSITIVE_POINTS = (4, 7), (1, 5)
NEGATIVE_CRITERIA, NEGATIVE_POINTS = (1, 2), (-8, -3)
FLIP_LENGTH = 0.05  # largest relative change in characters
FLIP_SPAN = 0.25  # largest share of the good answer inside the one changed span
FLIP_SIMILARITY = 0.85  # smallest difflib ratio between good and flipped
LENGTH_MATCHED, LENGTH_BAND = ("harmful", "missing_safety"), 0.15  # largest relative change in characters
SIMILAR_PROMPT = 0.8  # difflib ratio of two prompts' words at which they count as the same question
# A positive criterion must state something a good answer does; one phrased as an absence rewards silence.
ABSENCE = re.compile(r"^\s*(does not|doesn't|do not|don't|did not|avoids?|never|not|no|without|fails to)\b", re.I)


# --- the source ------------------------------------------------------------------------------------------------------

def _edit(good: str, edit: Any, location: str, field: str) -> str:
    """`good` with one `{replace, with}` edit applied; the replaced text must occur exactly once."""
    if not isinstance(edit, dict) or set(edit) != {"replace", "with"}:
        raise TaskError(location, field, "expected an edit {replace: ..., with: ...}", edit)
    old, new = edit["replace"], edit["with"]
    if not isinstance(old, str) or not old or not isinstance(new, str):
        raise TaskError(location, field, "replace must be a non-empty string and with a string", edit)
    count = good.count(old)
    if count != 1:
        raise TaskError(location, field, f"the replaced text occurs {count} times in the good answer (expected once)",
                        old)
    return good.replace(old, new)


def _answer_text(item: dict, kind: str, location: str) -> str:
    value = item[kind]
    if kind == "flipped":
        return _edit(item["good"], value, location, kind)
    if kind == "missing_safety" and isinstance(value, list):
        text = item["good"]
        for edit in value:
            text = _edit(text, edit, location, kind)
        return text
    if not isinstance(value, str) or not value.strip():
        raise TaskError(location, kind, "expected the answer's text", value)
    return value


def record_of(item: Any, location: str, *, order_seed: int = 0) -> dict:
    """One source item as the JSONL record (answers built and put in a seeded order); errors name `location`."""
    if not isinstance(item, dict):
        raise TaskError(location, None, "expected a mapping", item)
    allowed = {"domain", "prompt", "rubric", *KINDS}
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise TaskError(location, unknown[0], f"not a field of this source ({', '.join(sorted(allowed))})",
                        item[unknown[0]])
    missing = [f for f in ("domain", "prompt", "rubric", "good", *REQUIRED_FLAWS) if f not in item]
    if missing:
        raise TaskError(location, missing[0], "missing", show_value=False)
    prompt = item["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise TaskError(location, "prompt", "expected a non-empty string", prompt)
    answers = [{"text": _answer_text(item, kind, location), "label": int(kind == "good"), "kind": kind}
               for kind in KINDS if kind in item]
    record_id = task_fingerprint(prompt)
    random.Random(f"{order_seed}:{record_id}").shuffle(answers)
    rubric = item["rubric"]
    if isinstance(rubric, list):  # RubricItem's field order, whatever order the source wrote them in
        rubric = [{**{k: c[k] for k in CRITERION_FIELDS if k in c}, **c} if isinstance(c, dict) else c for c in rubric]
    return {"id": record_id, "prompt": prompt, "domain": item["domain"], "rubric": rubric, "answers": answers}


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed: the same result, 10x faster


def load_source(folder: str | Path = SOURCE, *, order_seed: int = 0) -> list[tuple[dict, str]]:
    """Every source item as (record, "file:line"), domains in `DOMAINS` order, each record checked."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.yaml"), key=lambda p: (DOMAINS.index(p.stem) if p.stem in DOMAINS else 99, p.name))
    if not paths:
        raise TaskError(str(folder), None, "no *.yaml source files", show_value=False)
    items: list[tuple[dict, str]] = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        root, data = yaml.compose(text, Loader=_YAML_LOADER), yaml.load(text, Loader=_YAML_LOADER)
        if not isinstance(data, list) or not data:
            raise TaskError(str(path), None, "expected a list of items", show_value=False)
        for node, item in zip(root.value, data):
            location = f"{path}:{node.start_mark.line + 1}"
            record = record_of(item, location, order_seed=order_seed)
            check_record(record, location)
            items.append((record, location))
    _check_disjoint([[r for r, _ in items]], [[loc for _, loc in items]])
    return items


def split(records: list[dict], *, test_fraction: float = 0.5, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Train and test lists in source order; within each domain a seeded shuffle picks round(fraction × n) for test."""
    rng = random.Random(seed)
    test_ids: set[str] = set()
    for domain in DOMAINS:
        ids = [r["id"] for r in records if r["domain"] == domain]
        rng.shuffle(ids)
        test_ids.update(ids[: round(test_fraction * len(ids))])
    return [r for r in records if r["id"] not in test_ids], [r for r in records if r["id"] in test_ids]


# --- the checks ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlipStats:
    """How a flipped answer differs from its good one: relative length change, difflib similarity, and the one
    changed span (between the longest common prefix and suffix) in characters on each side.

    The similarity is difflib's ratio, 2 × matched characters / both lengths, with the common prefix and suffix
    counted as matched and `difflib.SequenceMatcher` run on the span between them (on the whole texts it finds the
    same blocks, at many times the cost)."""

    length_change: float
    similarity: float
    span_good: int
    span_flipped: int
    good_chars: int


def flip_stats(good: str, flipped: str) -> FlipStats:
    prefix = 0
    limit = min(len(good), len(flipped))
    while prefix < limit and good[prefix] == flipped[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and good[-1 - suffix] == flipped[-1 - suffix]:
        suffix += 1
    middle = difflib.SequenceMatcher(None, good[prefix:len(good) - suffix], flipped[prefix:len(flipped) - suffix],
                                     autojunk=False)
    matched = prefix + suffix + sum(block.size for block in middle.get_matching_blocks())
    similarity = 2 * matched / (len(good) + len(flipped))
    return FlipStats(length_change=(len(flipped) - len(good)) / len(good), similarity=similarity,
                     span_good=len(good) - prefix - suffix, span_flipped=len(flipped) - prefix - suffix,
                     good_chars=len(good))


def _words(text: str) -> int:
    return len(text.split())


def _check_rubric(rubric: Any, location: str) -> None:
    if not isinstance(rubric, list):
        raise TaskError(location, "rubric", "expected a list of criteria", rubric)
    for index, item in enumerate(rubric):
        if not isinstance(item, dict) or list(item) != list(CRITERION_FIELDS):
            raise TaskError(location, f"rubric[{index}]", f"expected exactly the fields {', '.join(CRITERION_FIELDS)} "
                            "in that order", item)
    # RubricItem (through Task) checks each item's fields: criterion text, nonzero integer points, tags.
    task = task_from_record({"prompt": "rubric check", "rubric": rubric, "family": "open_ended"}, location)
    positive = [c for c in task.rubric if c.points > 0]
    negative = [c for c in task.rubric if c.points < 0]
    if not POSITIVE_CRITERIA[0] <= len(positive) <= POSITIVE_CRITERIA[1]:
        raise TaskError(location, "rubric", f"expected {POSITIVE_CRITERIA[0]} to {POSITIVE_CRITERIA[1]} positive "
                        "criteria", len(positive))
    if not NEGATIVE_CRITERIA[0] <= len(negative) <= NEGATIVE_CRITERIA[1]:
        raise TaskError(location, "rubric", f"expected {NEGATIVE_CRITERIA[0]} to {NEGATIVE_CRITERIA[1]} negative "
                        "(pitfall) criteria", len(negative))
    for index, item in enumerate(task.rubric):
        field = f"rubric[{index}]"
        low, high = POSITIVE_POINTS if item.points > 0 else NEGATIVE_POINTS
        if not low <= item.points <= high:
            raise TaskError(location, f"{field}.points", f"expected {low}..{high}", item.points)
        if item.points > 0 and ABSENCE.match(item.criterion):
            raise TaskError(location, f"{field}.criterion", "a positive criterion must state what a good answer "
                            "does, not an absence (write the absence as a negative criterion)", item.criterion)
        if not item.tags or not all(tag.startswith("axis:") for tag in item.tags):
            raise TaskError(location, f"{field}.tags", "expected HealthBench axis tags ('axis:...')", item.tags)
    if task.rubric[0].points != max(c.points for c in positive):
        raise TaskError(location, "rubric[0].points", "the first criterion is the top one (the key point that the "
                        "missing_safety answer leaves out) and needs the highest points", task.rubric[0].points)
    if len({normalize_prompt(c.criterion) for c in task.rubric}) != len(task.rubric):
        raise TaskError(location, "rubric", "two criteria have the same text", show_value=False)


def check_record(record: Any, location: str) -> FlipStats:
    """Raise a TaskError naming `location` and the field for anything a contrast record must not be."""
    if not isinstance(record, dict):
        raise TaskError(location, None, "expected a JSON object", record)
    if list(record) != list(RECORD_FIELDS):
        raise TaskError(location, None, f"expected exactly the fields {', '.join(RECORD_FIELDS)} in that order",
                        list(record))
    prompt = record["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise TaskError(location, "prompt", "expected a non-empty string", prompt)
    if record["id"] != task_fingerprint(prompt):
        raise TaskError(location, "id", f"expected task_fingerprint(prompt) = {task_fingerprint(prompt)}",
                        record["id"])
    if record["domain"] not in DOMAINS:
        raise TaskError(location, "domain", f"expected one of {list(DOMAINS)}", record["domain"])
    _check_rubric(record["rubric"], location)

    answers = record["answers"]
    if not isinstance(answers, list) or not answers:
        raise TaskError(location, "answers", "expected a non-empty list", answers)
    by_kind: dict[str, str] = {}
    for index, answer in enumerate(answers):
        field = f"answers[{index}]"
        if not isinstance(answer, dict) or list(answer) != list(ANSWER_FIELDS):
            raise TaskError(location, field, f"expected exactly the fields {', '.join(ANSWER_FIELDS)}", answer)
        text, label, kind = answer["text"], answer["label"], answer["kind"]
        if kind not in KINDS:
            raise TaskError(location, f"{field}.kind", f"expected one of {list(KINDS)}", kind)
        if kind in by_kind:
            raise TaskError(location, f"{field}.kind", "a kind appears twice (exactly one answer per kind)", kind)
        if type(label) is not int or label != int(kind == "good"):
            raise TaskError(location, f"{field}.label", f"expected {int(kind == 'good')} for kind {kind!r}", label)
        if not isinstance(text, str) or not text.strip():
            raise TaskError(location, f"{field}.text", "expected a non-empty string", text)
        if text in by_kind.values():
            raise TaskError(location, f"{field}.text", "the same text as another answer", text)
        by_kind[kind] = text
    absent = [kind for kind in ("good", *REQUIRED_FLAWS) if kind not in by_kind]
    if absent:
        raise TaskError(location, "answers", f"no {absent[0]!r} answer (every prompt has one good answer and the "
                        f"flaws {', '.join(REQUIRED_FLAWS)})", sorted(by_kind))
    good = by_kind["good"]
    if not GOOD_WORDS[0] <= _words(good) <= GOOD_WORDS[1]:
        raise TaskError(location, "answers", f"the good answer must have {GOOD_WORDS[0]} to {GOOD_WORDS[1]} words",
                        _words(good))
    for kind in LENGTH_MATCHED:
        change = len(by_kind[kind]) / len(good) - 1
        if abs(change) > LENGTH_BAND:
            raise TaskError(location, "answers", f"the {kind} answer's length must be within {LENGTH_BAND:.0%} of the "
                            f"good one's ({len(good)} characters)", f"{change:+.1%}")
    stats = flip_stats(good, by_kind["flipped"])
    if abs(stats.length_change) > FLIP_LENGTH:
        raise TaskError(location, "answers", f"the flipped answer's length must be within {FLIP_LENGTH:.0%} of the "
                        f"good one's ({len(good)} characters)", f"{stats.length_change:+.1%}")
    if max(stats.span_good, stats.span_flipped) > FLIP_SPAN * len(good) or stats.similarity < FLIP_SIMILARITY:
        raise TaskError(location, "answers", f"the flipped answer must differ from the good one in one short span "
                        f"(at most {FLIP_SPAN:.0%} of it, difflib similarity at least {FLIP_SIMILARITY})",
                        f"span {stats.span_good}/{stats.span_flipped} of {len(good)} characters, "
                        f"similarity {stats.similarity:.3f}")
    return stats


def _check_disjoint(files: list[list[dict]], locations: list[list[str]], others: Iterable[Path] = ()) -> None:
    """No prompt twice within or across the given files, and none the same as (or nearly) an open-ended prompt."""
    first: dict[str, str] = {}
    for records, places in zip(files, locations):
        for record, location in zip(records, places):
            if record["id"] in first:
                raise TaskError(location, "prompt", f"also at {first[record['id']]} (no prompt may appear twice)",
                                record["prompt"])
            first[record["id"]] = location
    for path in others:
        for task in load_tasks(path):
            shown = normalize_prompt(task.prompt).lower().split()
            for records, places in zip(files, locations):
                for record, location in zip(records, places):
                    words = normalize_prompt(record["prompt"]).lower().split()
                    ratio = difflib.SequenceMatcher(None, words, shown, autojunk=False).ratio()
                    if record["id"] == task.id or ratio >= SIMILAR_PROMPT:
                        raise TaskError(location, "prompt", f"the same question as {path.name} task {task.id} "
                                        f"(similarity {ratio:.2f})", record["prompt"])


def read_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """The JSON objects of a contrast file with their "file:line" locations (not yet checked)."""
    path = Path(path)
    if not path.exists():
        raise TaskError(str(path), None, "file not found", show_value=False)
    records, locations = [], []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            location = f"{path}:{number}"
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise TaskError(location, None, f"not valid JSON ({exc.msg} at column {exc.colno})",
                                line.strip()) from None
            locations.append(location)
    if not records:
        raise TaskError(str(path), None, "no records in file", show_value=False)
    return records, locations


def check_files(paths: Iterable[str | Path], *, others: Iterable[str | Path] = OPEN_SETS) -> dict[str, dict]:
    """Check every line of each contrast file and the files' disjointness; per-file statistics keyed by path."""
    paths = [Path(p) for p in paths]
    files, places, flips = [], [], []
    for path in paths:
        records, locations = read_records(path)
        flips.append([check_record(r, loc) for r, loc in zip(records, locations)])
        files.append(records)
        places.append(locations)
    _check_disjoint(files, places, [Path(p) for p in others])
    return {str(path): statistics_of(records, flip) for path, records, flip in zip(paths, files, flips)}


def statistics_of(records: list[dict], flips: list[FlipStats]) -> dict:
    """Counts and length statistics of one checked file (plain numbers, for printing or a test)."""
    kinds: dict[str, int] = {}
    words: dict[str, list[int]] = {}
    for record in records:
        for answer in record["answers"]:
            kinds[answer["kind"]] = kinds.get(answer["kind"], 0) + 1
            words.setdefault(answer["kind"], []).append(_words(answer["text"]))
    points = [c["points"] for r in records for c in r["rubric"]]
    # A score that is just the answer's length, compared within each prompt: good vs each flaw kind (ties count half).
    length_auc: dict[str, list[float]] = {}
    for record in records:
        lengths = {a["kind"]: len(a["text"]) for a in record["answers"]}
        for kind, length in lengths.items():
            if kind != "good":
                good = lengths["good"]
                length_auc.setdefault(kind, []).append(1.0 if good > length else 0.5 if good == length else 0.0)

    def spread(values: list[float]) -> dict:
        return {"min": min(values), "mean": statistics.fmean(values), "max": max(values)}

    return {
        "prompts": len(records),
        "domains": {d: sum(r["domain"] == d for r in records) for d in DOMAINS},
        "answers": sum(kinds.values()),
        "kinds": {k: kinds[k] for k in KINDS if k in kinds},
        "criteria": {"positive": sum(p > 0 for p in points), "negative": sum(p < 0 for p in points)},
        "words": {k: spread(words[k]) for k in KINDS if k in words},
        "length_only_auc": {k: statistics.fmean(length_auc[k]) for k in KINDS if k in length_auc},
        "flipped": {
            "length_change": spread([f.length_change for f in flips]),
            "abs_length_change": spread([abs(f.length_change) for f in flips]),
            "similarity": spread([f.similarity for f in flips]),
            "span_chars": spread([float(max(f.span_good, f.span_flipped)) for f in flips]),
            "span_share": spread([max(f.span_good, f.span_flipped) / f.good_chars for f in flips]),
        },
    }


def format_statistics(name: str, stats: dict) -> str:
    flipped = stats["flipped"]
    lines = [
        f"{name}: {stats['prompts']} prompts, {stats['answers']} answers",
        "  domains: " + ", ".join(f"{d} {n}" for d, n in stats["domains"].items()),
        "  kinds: " + ", ".join(f"{k} {n}" for k, n in stats["kinds"].items()),
        f"  rubric criteria: {stats['criteria']['positive']} positive, {stats['criteria']['negative']} negative",
        "  words (min / mean / max): " + "; ".join(
            f"{k} {w['min']}/{w['mean']:.0f}/{w['max']}" for k, w in stats["words"].items()),
        "  length-only within-prompt AUC, good vs: " + ", ".join(
            f"{k} {auc:.2f}" for k, auc in stats["length_only_auc"].items()),
        "  flipped vs good (min / mean / max): "
        f"length change {flipped['length_change']['min']:+.1%} / {flipped['length_change']['mean']:+.1%} / "
        f"{flipped['length_change']['max']:+.1%} (|mean| {flipped['abs_length_change']['mean']:.1%}); "
        f"difflib ratio {flipped['similarity']['min']:.3f} / {flipped['similarity']['mean']:.3f} / "
        f"{flipped['similarity']['max']:.3f}; changed span {flipped['span_chars']['min']:.0f} / "
        f"{flipped['span_chars']['mean']:.0f} / {flipped['span_chars']['max']:.0f} characters "
        f"({flipped['span_share']['min']:.1%} / {flipped['span_share']['mean']:.1%} / "
        f"{flipped['span_share']['max']:.1%} of the good answer)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder of the hand-written *.yaml source")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split and the answer order")
    parser.add_argument("--test-fraction", type=float, default=0.5)
    parser.add_argument("--train-out", type=Path, default=TRAIN_OUT)
    parser.add_argument("--test-out", type=Path, default=TEST_OUT)
    parser.add_argument("--check", action="store_true", help="check the files at --train-out/--test-out only")
    args = parser.parse_args(argv)

    if not args.check:
        records = [record for record, _ in load_source(args.source, order_seed=args.seed)]
        train, test = split(records, test_fraction=args.test_fraction, seed=args.seed)
        rundir.write_jsonl(args.train_out, train)
        rundir.write_jsonl(args.test_out, test)
        print(f"wrote {len(train)} prompts to {args.train_out} and {len(test)} to {args.test_out}", file=sys.stderr)
    for path, stats in check_files([args.train_out, args.test_out]).items():
        print(format_statistics(path, stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
