"""Reward variants of the fidelity study: a name for a set of RunConfig overrides of the reward (stages 3-5).

A variant is what the study changes between two judgings of the same bank: the Verifier's chunking, its samples,
evidence, read-first, the consensus check, the rubric's size and source, the weighting of its criteria. Every lever
is a RunConfig field, so a variant is just a dict of field values applied on top of the study's config; naming them
keeps `--variants base,consensus` short and makes fidelity.json say in words what was compared.

    parse_variant("consensus+sc3")      -> {"consensus_check": True, "verifier_samples": 3}
    parse_variant("max_answer_chars=800") -> {"max_answer_chars": 800}
    apply_variant(config, "per_answer")  -> config with max_answers_per_call=1 (validated)

A name is one of VARIANTS, a `field=value` pair (the value read as YAML: 3, true, 0.5, a string), or several of
those joined by "+". Two parts that set one field to different values are refused. Pure: no I/O, no model calls.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..config import RunConfig

# The reward levers the study compares, one per name; combinations are written "a+b".
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    # One Verifier call per answer instead of up to 12 answers x all criteria in one JSON matrix.
    "per_answer": {"max_answers_per_call": 1},
    # The Verifier writes each answer's final result before its verdicts (room to read before judging).
    "read_first": {"verifier_read_first": True},
    # A verdict counts only when the Verifier's quote of the answer occurs in it verbatim.
    "evidence": {"verifier_evidence": True},
    # Self-consistency: a majority per criterion over several Verifier samples.
    "sc3": {"verifier_samples": 3},
    "sc5": {"verifier_samples": 5},
    # The final-result criterion decided by code against the teacher refs' majority answer (no ground truth). On by
    # default: "consensus" names it whatever the default, "no_consensus" leaves the Verifier's verdict standing.
    "consensus": {"consensus_check": True},
    # (The result share only acts with the check, so it is off here too: this is the Verifier's reward alone.)
    "no_consensus": {"consensus_check": False, "result_weight_share": 0.0},
    # With the consensus check: the code-checked result weighs at least 75% of the points when scoring (the default);
    # "no_result_share" scores with the Rubricator's weights as written.
    "result_share": {"result_weight_share": 0.75},
    "no_result_share": {"result_weight_share": 0.0},
    # Fewer, coarser criteria: less room for criteria about form.
    "few_criteria": {"max_criteria": 6},
    # Soft verdicts: per (answer, criterion) the probability of "true" from the endpoint's log-probabilities.
    "soft": {"verifier_mode": "soft"},
    # The JSON matrix of booleans whatever the family (the default "auto" reads soft verdicts on open-ended tasks).
    "batched": {"verifier_mode": "batched"},
    # Criteria that every answer of the group meets (or misses) weigh 0 when scoring (scoring.spread_weighted). With
    # boolean verdicts and the default group scaling this cannot change a ranking; compare it as "soft+spread".
    "spread": {"criterion_weighting": "spread"},
    # The Rubricator writes the points most teacher refs agree on and sees no rollout.
    "agreed_points": {"rubric_source": "reference_consensus"},
    # A positive criterion phrased as an absence ("Does not mention ...") is sent back to the Rubricator.
    "no_absences": {"absence_criteria": "refuse"},
    # Negative (pitfall) criteria allowed, -2/-1 points.
    "pitfalls": {"pitfalls": True},
}


class VariantError(ValueError):
    """A variant name that cannot be turned into RunConfig overrides; the message lists the known names."""


def _known() -> str:
    return ", ".join(VARIANTS) + " (or field=value; combine with '+')"


def _value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_variant(name: str) -> dict[str, Any]:
    """The RunConfig overrides a variant name stands for (see the module docstring).

    >>> parse_variant("base")
    {}
    >>> parse_variant("sc3+consensus")
    {'verifier_samples': 3, 'consensus_check': True}
    """
    name = str(name).strip()
    if not name:
        raise VariantError(f"empty variant name; known variants: {_known()}")
    overrides: dict[str, Any] = {}
    for part in name.split("+"):
        part = part.strip()
        if "=" in part:
            field, _, text = part.partition("=")
            field = field.strip()
            if field not in RunConfig.model_fields:
                raise VariantError(f"variant {name!r}: {field!r} is not a RunConfig field; known variants: {_known()}")
            values = {field: _value(text.strip())}
        elif part in VARIANTS:
            values = VARIANTS[part]
        else:
            raise VariantError(f"unknown variant {part!r} in {name!r}; known variants: {_known()}")
        for field, value in values.items():
            if field in overrides and overrides[field] != value:
                raise VariantError(
                    f"variant {name!r}: {field} is set to both {overrides[field]!r} and {value!r}"
                )
            overrides[field] = value
    return overrides


def parse_variants(names: str | Iterable[str]) -> dict[str, dict[str, Any]]:
    """Several variants, from a list or a comma-separated string, as {name: overrides}, in order, each once."""
    if isinstance(names, str):
        names = names.split(",")
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        name = str(name).strip()
        if name and name not in out:
            out[name] = parse_variant(name)
    if not out:
        raise VariantError(f"no variant given; known variants: {_known()}")
    return out


def apply_variant(config: RunConfig, variant: str | Mapping[str, Any]) -> RunConfig:
    """`config` with a variant's overrides, validated as a whole RunConfig (a bad value fails here, named)."""
    overrides = parse_variant(variant) if isinstance(variant, str) else dict(variant)
    if not overrides:
        return config
    try:
        return RunConfig.model_validate({**config.model_dump(), **overrides})
    except ValueError as exc:
        label = variant if isinstance(variant, str) else overrides
        raise VariantError(f"variant {label!r}: {exc}") from exc


# Fields the Rubricator's prompt and sampling read (rubrics.rubric_messages / induce_rubric_async).
RUBRIC_FIELDS = frozenset({"rubricator", "min_criteria", "max_criteria", "rubricator_temperature",
                           "rubricator_max_tokens", "rubric_attempts", "rubric_student_samples", "pitfalls",
                           "max_answer_chars", "strip_thinking", "rubric_source", "absence_criteria"})


def shares_rubrics(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two variants' overrides induce the same rubrics, so the second replays the first's from the LLM
    cache (its Rubricator calls are cache hits) and differs only in verification.

    >>> shares_rubrics(parse_variant("base"), parse_variant("sc3+consensus"))
    True
    >>> shares_rubrics(parse_variant("base"), parse_variant("few_criteria"))
    False
    """
    return {k: v for k, v in a.items() if k in RUBRIC_FIELDS} == {k: v for k, v in b.items() if k in RUBRIC_FIELDS}
