"""Soft verdicts against the local llama-server (SmolLM2-135M): the log-probabilities it returns and how the kit
reads them, the prompt cache that an answer's criteria share, the disk cache replaying log-probabilities, and an
endpoint that returns none (the fault proxy strips them from the server's real replies).

A 135M model's verdicts are noise; what this proves is the machinery, on the server's own replies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import urllib.request

import pytest

from ropd_kit.bench.faultproxy import FaultProxy
from ropd_kit.config import RunConfig
from ropd_kit.data import Task
from ropd_kit.llm import LLMClient, make_clients, run_sync, token_logprobs
from ropd_kit.pipeline import score_group
from ropd_kit.rubrics import Criterion, Rubric
from ropd_kit.scoring import weighted_score
from ropd_kit.verify import (
    NO_LOGPROBS,
    SOFT_MAX_TOKENS,
    SOFT_TOP_LOGPROBS,
    blind_order,
    soft_verifier_messages,
    verdict_probability,
    verdict_word,
    verify_group_async,
)

pytestmark = pytest.mark.integration

TASK = Task(id="apples", prompt="Tom has 12 apples, gives away 5 and buys 3 more. How many apples does he have now?",
            answer="10", domain="arithmetic")
RUBRIC = Rubric(criteria=[
    Criterion(id="steps", text="Computes 12 - 5 = 7 before adding the 3 apples.", points=2, category="reasoning"),
    Criterion(id="answer", text="States the final answer 10.", points=5, category="correctness"),
])
REFS = ["12 - 5 = 7, then 7 + 3 = 10.\nAnswer: 10", "He gives 5 away (7 left) and buys 3: 10 apples.\nAnswer: 10"]
ROLLOUTS = ["12 + 5 + 3 = 20\nAnswer: 20", "12 - 5 = 7 and 7 + 3 = 10\nAnswer: 10"]


@pytest.fixture
def config(fast_config: RunConfig) -> RunConfig:
    return RunConfig(**{**fast_config.model_dump(), "verifier_mode": "soft"})


def _verify(config: RunConfig, *, seed: int = 3, refs=REFS, rollouts=ROLLOUTS):
    async def go():
        async with make_clients(config) as clients:
            verdicts = await verify_group_async(TASK, RUBRIC, refs, rollouts, clients.verifier, config, seed=seed)
            return verdicts, clients.stats.snapshot()["verifier"]

    return run_sync(go())


def _post(base_url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.load(reply)


def test_the_servers_log_probabilities_as_the_kit_reads_them(local_server, fast_config):
    """The server's own JSON read into the kit's form field for field; through the client, the same form; and
    p(true) is the share of the verdict words among the top tokens the server listed."""
    import openai

    messages = soft_verifier_messages(TASK, RUBRIC.criteria[1].text, ROLLOUTS[1], "f3nce")
    body = {"model": local_server.model_id, "messages": messages, "temperature": 0.0,
            "max_tokens": SOFT_MAX_TOKENS, "logprobs": True, "top_logprobs": SOFT_TOP_LOGPROBS}
    raw = _post(local_server.base_url, body)
    sent = raw["choices"][0]["logprobs"]["content"]
    read = token_logprobs(openai.types.chat.ChatCompletion.model_validate(raw).choices[0])
    assert read == [{"token": t["token"], "logprob": t["logprob"],
                     "top": [[a["token"], a["logprob"]] for a in t["top_logprobs"]]} for t in sent]

    client = LLMClient(fast_config.verifier, "verifier")
    try:
        result = run_sync(client.chat(messages, temperature=0.0, max_tokens=SOFT_MAX_TOKENS,
                                      top_logprobs=SOFT_TOP_LOGPROBS))
        plain = run_sync(client.chat(messages, temperature=0.0, max_tokens=SOFT_MAX_TOKENS))
    finally:
        client.close()
    assert plain.logprobs is None  # not asked for: none come back
    assert result.logprobs is not None and len(result.logprobs) == result.completion_tokens
    assert "".join(t["token"] for t in result.logprobs) == result.text
    for position in result.logprobs:
        assert len(position["top"]) == SOFT_TOP_LOGPROBS
        probs = [math.exp(lp) for _, lp in position["top"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert position["top"][0][0] == position["token"]  # greedy: the generated token is the most likely

    p = verdict_probability(result.logprobs)
    first = next(pos for pos in result.logprobs if any(verdict_word(t) is not None for t, _ in pos["top"]))
    yes = sum(math.exp(lp) for t, lp in first["top"] if verdict_word(t) is True)
    no = sum(math.exp(lp) for t, lp in first["top"] if verdict_word(t) is False)
    assert p == pytest.approx(yes / (yes + no))


def test_an_answers_second_criterion_reuses_the_servers_prompt_cache(local_server, fast_config, tmp_path):
    # An answer no earlier request has shown, long enough that the prefix is most of the prompt.
    answer = "\n".join(f"Step {k}: in check {tmp_path.name}, 12 - 5 = 7 and 7 + 3 = 10." for k in range(12))
    client = LLMClient(fast_config.verifier, "verifier")
    try:
        first, second = (
            run_sync(client.chat(soft_verifier_messages(TASK, c.text, answer, "f3nce"), temperature=0.0,
                                 max_tokens=SOFT_MAX_TOKENS, top_logprobs=SOFT_TOP_LOGPROBS))
            for c in RUBRIC.criteria
        )
    finally:
        client.close()
    processed = [r.prompt_tokens - r.reused_prompt_tokens for r in (first, second)]
    assert first.reused_prompt_tokens is not None and second.reused_prompt_tokens is not None
    assert processed[0] > 150  # the answer itself was new to the server
    assert processed[1] * 4 < processed[0], processed  # only the criterion and what follows it was new
    assert second.reused_prompt_tokens > 0.8 * second.prompt_tokens


def test_the_default_judges_softly_wherever_no_code_check_decides_the_result(fast_config):
    config = RunConfig(**{**fast_config.model_dump(), "verifier_mode": "auto"})
    burn = Task(id="burn", prompt="How should I treat a small kitchen burn?", family="open_ended")
    criteria = Rubric(criteria=[
        Criterion(id="cool", text="Says to cool the burn under cool running water.", points=3, category="correctness"),
        Criterion(id="ice", text="Warns against putting ice on the burn.", points=2, category="safety"),
    ])
    answers = ["Cool it under running water for about 20 minutes; do not use ice.", "Put butter on it."]

    async def go(task, rubric, refs, rollouts):
        async with make_clients(config) as clients:
            return await verify_group_async(task, rubric, refs, rollouts, clients.verifier, config, seed=1)

    soft = run_sync(go(burn, criteria, answers[:1], answers))
    # One request per (answer, criterion); a reply the small model words oddly falls back to the matrix.
    assert soft.calls >= 3 * 2 and soft.soft_cells > 0 and soft.soft_cells + soft.boolean_cells == 3 * 2
    assert len(soft.student_notes) == 2 and len(soft.teacher_notes) == 1
    assert {note["verdict_kind"] for note in soft.student_notes + soft.teacher_notes} <= {"soft", "mixed"}
    # Arithmetic whose references agree: the consensus check decides the result, the matrix is read once.
    checked = run_sync(go(TASK, RUBRIC, REFS, ROLLOUTS))
    assert checked.soft_cells == 0 and checked.calls == 1 and checked.student_notes == []  # one matrix
    # References that agree on no answer: the Verifier decides the ranking, so it is read softly there too.
    split = run_sync(go(TASK, RUBRIC, [REFS[0], "12 + 5 - 3 = 14\nAnswer: 14"], ROLLOUTS))
    assert split.soft_cells > 0 and split.calls >= 4 * 2
    assert {note["verdict_kind"] for note in split.student_notes} <= {"soft", "mixed"}

    # The evaluation's reference-rubric grade reads the same probabilities: a score between the boolean ones.
    from ropd_kit.train.evaluate import reference_scores, rubric_score

    graded = Task(id="burn-graded", prompt=burn.prompt, family="open_ended",
                  rubric=[{"criterion": c.text, "points": c.points} for c in criteria.criteria])
    (result,) = reference_scores([(graded, answers)], config)
    booleans = {rubric_score([3, 2], [a, b]) for a in (False, True) for b in (False, True)}
    assert result.n_failed == 0 and any(score not in booleans for score in result.scores), result.scores


def test_a_soft_group_reads_probabilities_scores_them_and_replays_them(config):
    verdicts, usage = _verify(config)
    m, n = len(RUBRIC.criteria), len(REFS) + len(ROLLOUTS)
    assert not verdicts.failed and verdicts.order == blind_order(len(REFS), len(ROLLOUTS), 3)
    assert usage["http_requests"] == verdicts.calls == n * m  # one request per (answer, criterion), no fallback
    assert verdicts.soft_cells == n * m and verdicts.boolean_cells == 0
    # An answer's later criteria found its prefix in the server's cache.
    assert usage["reused_prompt_tokens"] > 0.5 * usage["prompt_tokens"]
    for rows, notes in ((verdicts.teacher, verdicts.teacher_notes), (verdicts.student, verdicts.student_notes)):
        for row, note in zip(rows, notes):
            assert note["verdict_kind"] == "soft" and len(note["probabilities"]) == m
            assert all(0.0 <= p <= 1.0 for p in note["probabilities"])
            assert row == [p >= 0.5 for p in note["probabilities"]]

    # The records and the score: the probabilities, with the code-decided result criterion as 0 or 1.
    record = {"task_id": TASK.id, "step": 0, "criteria": [c.model_dump() for c in RUBRIC.criteria]}
    judged = score_group(TASK, 0, record, RUBRIC, verdicts, REFS, ROLLOUTS, config)
    points = [c["points"] for c in judged.rubric_record["criteria"]]
    consensus = judged.rubric_record["consensus"]
    assert consensus["applied"] and consensus["result_id"] == "answer"
    k = [c["id"] for c in judged.rubric_record["criteria"]].index("answer")
    points[k] = max(points[k], config.result_weight_share / (1 - config.result_weight_share) * (sum(points) - points[k]))
    for r in judged.verdict_records:
        right = r["answer_key"] != "student-0"
        assert r["verdict_kind"] == "soft" and r["probabilities"][k] == float(right)
        assert r["score"] == pytest.approx(weighted_score(points, [r["probabilities"]])[0])
    assert judged.scores[1] > judged.scores[0]

    again, replay = _verify(config)
    assert replay["http_requests"] == 0 and replay["cache_hits"] == n * m  # log-probabilities came from the cache
    assert again.student_notes == verdicts.student_notes and again.teacher_notes == verdicts.teacher_notes


def test_an_endpoint_without_log_probabilities_falls_back_to_booleans_and_says_so_once(config, local_server, caplog):
    with FaultProxy(local_server.base_url, fault_rate=1.0, faults=["no_logprobs"]) as proxy:
        url = proxy.base_url
        endpoint = config.verifier.model_copy(update={"base_url": url})
        stripped = RunConfig(**{**config.model_dump(), "verifier": endpoint.model_dump()})
        with caplog.at_level(logging.WARNING, logger="ropd_kit.verify"):
            # Two groups of one reference and one rollout each: the second is judged once the endpoint is known.
            first, _ = _verify(stripped, seed=1, refs=REFS[:1], rollouts=ROLLOUTS[:1])
            seen = len(proxy.events)
            second, usage = _verify(stripped, seed=2, refs=REFS[1:], rollouts=ROLLOUTS[1:])
    named = [r for r in caplog.records if "no token log-probabilities" in r.getMessage()]
    assert len(named) == 1 and url in named[0].getMessage()
    assert proxy.injected["no_logprobs"] == proxy.requests  # every reply came back without them
    m = len(RUBRIC.criteria)
    for verdicts in (first, second):
        judged = [(row, note) for row, note in zip(verdicts.teacher + verdicts.student,
                                                   verdicts.teacher_notes + verdicts.student_notes) if row]
        assert judged and verdicts.soft_cells == 0 and verdicts.boolean_cells == m * len(judged)
        for row, note in judged:
            assert note["verdict_kind"] == "boolean" and NO_LOGPROBS in note["fallback_reason"]
            assert "probabilities" not in note and all(isinstance(v, bool) for v in row)
    # The first group asked per criterion until the endpoint showed it has none; the second went straight to the
    # batched call (the verdict-matrix requests), asking nothing per criterion.
    assert any(not e.verifier for e in proxy.events[:seen]) and all(e.verifier for e in proxy.events[seen:])
    assert usage["http_requests"] == len(proxy.events) - seen


def test_groups_judged_together_ask_at_most_as_many_answers_at_once_as_the_server_has_slots(fast_config, tmp_path):
    # Three groups at once, twelve answers in all, against four slots. Were every answer's requests in flight
    # together, an answer's next criterion would queue behind eleven others and land on a slot another answer has
    # since taken. An answer holds one of the client's four sequences for all its criteria instead: at no time are
    # more than four answers being asked about, and each answer's criteria are asked in one run.
    rubric = Rubric(criteria=[
        Criterion(id=f"c{k}", text=text, points=1, category="reasoning")
        for k, text in enumerate(["Subtracts 5 from 12.", "Adds 3 at the end.", "States the answer 10.",
                                  "Explains each step."])
    ])

    def answers(group: int) -> list[str]:
        return ["\n".join(f"Step {k}: group {group}, answer {a}, run {tmp_path.name}: 12 - 5 = 7 and 7 + 3 = 10."
                          for k in range(8)) for a in range(2)]

    verifier = fast_config.verifier.model_copy(update={"max_concurrency": 4})  # the server's four slots
    config = RunConfig(**{**fast_config.model_dump(), "verifier_mode": "soft", "use_cache": False,
                          "verifier": verifier})
    asking: dict[str, int] = {}  # answer -> its requests under way (queued for the client included)
    most = [0]

    async def go():
        async with make_clients(config) as clients:
            chat = clients.verifier.chat

            async def counted(messages, **kwargs):
                answer = messages[-1]["content"].split("Criterion:")[0]
                asking[answer] = asking.get(answer, 0) + 1
                most[0] = max(most[0], sum(1 for n in asking.values() if n))
                try:
                    return await chat(messages, **kwargs)
                finally:
                    asking[answer] -= 1

            clients.verifier.chat = counted
            await asyncio.gather(*(
                verify_group_async(TASK, rubric, answers(g), answers(g + 10), clients.verifier, config, seed=g)
                for g in range(3)
            ))
            return clients.stats.snapshot()["verifier"]

    usage = run_sync(go())
    assert usage["http_requests"] == 3 * 4 * 4 and len(asking) == 12
    assert most[0] == 4
    assert usage["reused_prompt_tokens"] > 0.7 * usage["prompt_tokens"], usage
