"""Prompts per task family (ropd_kit/prompts): which template each role gets, prompts_dir replacing them, the
arithmetic prompts and reference-index keys unchanged, and a conversation reaching every role intact.

The role tests send real requests to a local OpenAI-compatible stub (bench.stubjudge.StubJudge, recording every
request body) through the kit's own clients; no model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import string
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from ropd_kit import prompts
from ropd_kit.answers import chosen_letter, extract_final_answer, is_correct
from ropd_kit.bench.stubjudge import STUB_MODEL, StubJudge
from ropd_kit.config import EndpointConfig, RunConfig
from ropd_kit.data import FAMILIES, Task, load_tasks, render_messages, task_fingerprint, task_from_record
from ropd_kit.llm import make_clients
from ropd_kit.pipeline import judge_group_async
from ropd_kit.reward import judge_messages, task_from_columns
from ropd_kit.rollouts import sample_rollouts_async, student_messages
from ropd_kit.rubrics import induce_rubric_async, rubric_messages
from ropd_kit.teacher import ReferenceIndex, collect_references_async, teacher_messages
from ropd_kit.verify import verifier_messages

DATA = Path(__file__).resolve().parents[1] / "data"
ROLE_FILES = ("student_system.txt", "teacher_system.txt", "rubricator_system.txt", "verifier_system.txt")
FIRST = {family: load_tasks(DATA / name, limit=1)[0] for family, name in (
    ("arithmetic", "arith_test.jsonl"), ("math", "math_test.jsonl"), ("multiple_choice", "mc_test.jsonl"),
    ("open_ended", "open_test.jsonl"))}
REFS, ROLLOUTS = ["6 * 7 = 42\nAnswer: 42", "It is 42.\nAnswer: 42"], ["Answer: 41", "40 + 2 = 42\nAnswer: 42"]


def packaged(rel: str) -> str:
    return resources.files("ropd_kit").joinpath("prompts", *rel.split("/")).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# Which template each family gets


def test_the_shipped_files_are_the_tasks_families_own():
    assert {t.family for t in FIRST.values()} == set(FAMILIES)
    for family in ("math", "multiple_choice", "open_ended"):
        for name in ROLE_FILES:
            assert f"{family}/{name}" in prompts.packaged_names(), (family, name)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_role_gets_its_familys_template(family):
    task, config = FIRST[family], RunConfig()
    own = (lambda name: packaged(name if family == "arithmetic" else f"{family}/{name}").strip())
    assert student_messages(task, config)[0]["content"] == own("student_system.txt")
    assert teacher_messages(task, config)[0]["content"] == own("teacher_system.txt")
    rubric_system = rubric_messages(task, REFS, ROLLOUTS, config)[0]["content"]
    assert rubric_system.splitlines()[0] == own("rubricator_system.txt").splitlines()[0]
    verify_system = verifier_messages(task, ["States 42."], ["42"], "b0und")[0]["content"]
    assert verify_system == string.Template(own("verifier_system.txt")).substitute(boundary="b0und").strip()
    # The question itself reaches each role unchanged (a plain prompt, not a conversation).
    assert student_messages(task, config)[1:] == [{"role": "user", "content": task.prompt}]


def test_no_arithmetic_wording_outside_arithmetic():
    arithmetic_only = ("If the answer is a number", "check any arithmetic yourself", "Gives 46 as the final answer")
    for family in ("math", "multiple_choice", "open_ended"):
        task = FIRST[family]
        config = RunConfig(pitfalls=True)
        texts = [m["content"] for m in student_messages(task, config) + teacher_messages(task, config)
                 + rubric_messages(task, REFS, ROLLOUTS, config) + judge_messages(task, "x", config)]
        for phrase in arithmetic_only:
            assert not any(phrase in t for t in texts), (family, phrase)
    task = FIRST["open_ended"]
    open_texts = " ".join(messages[0]["content"] for messages in (  # the system prompts: no answer-line format
        student_messages(task), teacher_messages(task), rubric_messages(task, REFS, ROLLOUTS, RunConfig()),
        verifier_messages(task, ["c"], ["a"], "b0")))
    assert "Answer:" not in open_texts and "final answer" not in open_texts.lower()


def test_the_answer_formats_asked_for_are_what_evaluation_reads():
    math_prompt = student_messages(FIRST["math"])[0]["content"]
    assert "\\boxed{<final answer>}" in math_prompt
    reply = "11x = 48, so x = 48/11.\n\\boxed{\\frac{48}{11}}"
    assert is_correct(FIRST["math"].answer, reply) and extract_final_answer("2 + 2 = 4\n\\boxed{4}") == "4"
    mc_prompt = student_messages(FIRST["multiple_choice"])[0]["content"]
    assert "Answer: <letter>" in mc_prompt
    assert chosen_letter("75% of 60 is 45, option D.\nAnswer: D", FIRST["multiple_choice"].choices) == "D"


# ---------------------------------------------------------------------------------------------------------------
# The arithmetic prompts and keys are what they were


def test_arithmetic_messages_are_the_top_level_templates_as_before():
    config = RunConfig()
    tasks = load_tasks(DATA / "arith_test.jsonl", limit=20)
    for task in tasks:
        assert task.family == "arithmetic"
        for messages in (student_messages(task, config), student_messages(task)):
            assert messages == [{"role": "system", "content": packaged("student_system.txt").strip()},
                                {"role": "user", "content": task.prompt}]
        assert teacher_messages(task, config) == [{"role": "system", "content": packaged("teacher_system.txt").strip()},
                                                  {"role": "user", "content": task.prompt}]
        # A Task and its bare prompt (what every caller passed before families) give the same judge prompts.
        assert rubric_messages(task, REFS, ROLLOUTS, config) == rubric_messages(task.prompt, REFS, ROLLOUTS, config)
        assert verifier_messages(task, ["c"], ["a", "b"], "f00d") == verifier_messages(task.prompt, ["c"], ["a", "b"],
                                                                                       "f00d")
        assert judge_messages(task, "Answer: 3", config) == judge_messages(task.prompt, "Answer: 3", config)
    user = verifier_messages(tasks[0], ["States 96."], ["96"], "f00d")[1]["content"]
    assert user.startswith(f"Task:\n{tasks[0].prompt.strip()}\n\nCriteria (1):\n1. States 96.")


def old_key(prompt: str, config: RunConfig, ref_idx: int) -> str:
    """The reference-index key as teacher.py wrote it before task families (kept here verbatim as the contract)."""
    template = hashlib.sha256(packaged("teacher_system.txt").strip().encode()).hexdigest()[:12]
    return json.dumps({"task": task_fingerprint(prompt), "model": config.teacher.model,
                       "temperature": float(config.teacher_temperature), "top_p": float(config.teacher_top_p),
                       "max_tokens": int(config.teacher_max_tokens), "prompt_version": config.teacher_prompt_version,
                       "template": template, "ref_idx": int(ref_idx)}, sort_keys=True)


def test_arithmetic_reference_keys_are_unchanged_so_existing_indexes_replay():
    config = RunConfig(teacher_max_tokens=128)
    for task in load_tasks(DATA / "arith_train.jsonl", limit=30):
        for k in (0, 3):
            assert ReferenceIndex.key(task, config, k) == ReferenceIndex.key(task.prompt, config, k) == old_key(
                task.prompt, config, k)


def test_keys_follow_the_family_template_and_the_exact_turns():
    config = RunConfig()
    math = FIRST["math"]
    # The same question as a math task is sent another teacher prompt: its references are not the arithmetic ones.
    as_arith = math.model_copy(update={"family": "arithmetic"})
    assert ReferenceIndex.key(math, config, 0) != ReferenceIndex.key(as_arith, config, 0)
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "How do I  boil an egg?"}]
    a = task_from_record({"messages": turns}, "a")
    b = task_from_record({"messages": turns[:2] + [{"role": "user", "content": "How do I boil an egg?"}]}, "b")
    assert task_fingerprint(a.prompt) == task_fingerprint(b.prompt)  # whitespace-insensitive fingerprint ...
    key_a = json.loads(ReferenceIndex.key(a, config, 0))
    assert "messages" in key_a and ReferenceIndex.key(a, config, 0) != ReferenceIndex.key(b, config, 0)  # ... turns not
    single = task_from_record({"messages": [{"role": "user", "content": "How do I boil an egg?"}]}, "s")
    assert "messages" not in json.loads(ReferenceIndex.key(single, config, 0))


# ---------------------------------------------------------------------------------------------------------------
# prompts_dir


def test_prompts_dir_replaces_templates_by_file_name(tmp_path):
    (tmp_path / "open_ended").mkdir()
    (tmp_path / "open_ended" / "student_system.txt").write_text("Reply like a pirate.\n")
    (tmp_path / "rubricator_user.txt").write_text("QUESTION:\n$question\n\nREFS:\n$references\n\nTRIES:\n$attempts\n")
    (tmp_path / "teacher_system.txt").write_text("Solve it. End with 'Answer: <n>'.\n")
    config = RunConfig(prompts_dir=str(tmp_path))
    assert student_messages(FIRST["open_ended"], config)[0]["content"] == "Reply like a pirate."
    # A family with a packaged file of its own keeps it; the top-level replacement serves the others.
    assert student_messages(FIRST["math"], config)[0]["content"] == packaged("math/student_system.txt").strip()
    assert teacher_messages(FIRST["arithmetic"], config)[0]["content"] == "Solve it. End with 'Answer: <n>'."
    assert teacher_messages(FIRST["math"], config)[0]["content"] == packaged("math/teacher_system.txt").strip()
    for family in FAMILIES:
        user = rubric_messages(FIRST[family], REFS, ROLLOUTS, config)[1]["content"]
        assert user.startswith(f"QUESTION:\n{FIRST[family].prompt.strip()}\n\nREFS:\n<<<REFERENCE-A")
    # The replaced teacher prompt is part of the reference key: nothing made with the packaged one replays.
    assert ReferenceIndex.key(FIRST["arithmetic"], config, 0) != ReferenceIndex.key(FIRST["arithmetic"], RunConfig(), 0)
    assert ReferenceIndex.key(FIRST["math"], config, 0) == ReferenceIndex.key(FIRST["math"], RunConfig(), 0)


def test_a_prompts_dir_file_that_replaces_nothing_is_refused_with_its_name(tmp_path):
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "student_sytem.txt").write_text("typo")
    with pytest.raises(ValidationError, match=r"prompts_dir[\s\S]*math/student_sytem\.txt replaces no template"):
        RunConfig(prompts_dir=str(tmp_path))
    with pytest.raises(ValidationError, match=r"prompts_dir[\s\S]*is not a folder"):
        RunConfig(prompts_dir=str(tmp_path / "nowhere"))


def test_an_unknown_placeholder_names_the_file(tmp_path):
    (tmp_path / "verifier_user.txt").write_text("Task: $questoin\n$criteria\n$answers\n")
    config = RunConfig(prompts_dir=str(tmp_path))
    with pytest.raises(prompts.PromptError, match=r"verifier_user\.txt: unknown placeholder \$questoin"):
        verifier_messages(FIRST["math"], ["c"], ["a"], "b0", prompts_dir=config.prompts_dir)


# ---------------------------------------------------------------------------------------------------------------
# Requests as the endpoint receives them


class RecordingJudge(StubJudge):
    """The stub judge, keeping every request body; `rubric` (when set) is the Rubricator's reply."""

    def __init__(self, rubric: dict | None = None):
        super().__init__()
        self.bodies: list[dict] = []
        self.rubric = rubric

    async def _chat(self, request):
        from aiohttp import web

        body = await request.json()
        self.bodies.append(body)
        fmt = json.dumps(body.get("response_format") or {})
        if self.rubric is not None and '"criteria"' in fmt:
            return web.json_response({
                "id": "r", "object": "chat.completion", "created": 0, "model": STUB_MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(self.rubric)},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})
        return await super()._chat(request)

    def role_bodies(self, marker: str) -> list[dict]:
        return [b for b in self.bodies if marker in json.dumps(b.get("response_format") or {})]


def stub_config(judge: StubJudge, tmp_path: Path, **extra) -> RunConfig:
    endpoint = EndpointConfig(base_url=judge.base_url, model=STUB_MODEL, max_retries=0, timeout_s=30)
    return RunConfig(run_dir=str(tmp_path / "run"), use_cache=False, ref_index_dir=str(tmp_path / "refs"),
                     **{r: endpoint for r in ("teacher", "rubricator", "verifier", "student")},
                     n_teacher_refs=2, n_rollouts=2, **extra)


CONVERSATION = task_from_record({
    "messages": [
        {"role": "system", "content": "You help people cook at home."},
        {"role": "user", "content": "I want to bake my first loaf of bread."},
        {"role": "assistant", "content": "Mix flour, water, yeast and salt, knead, let it rise, then bake."},
        {"role": "user", "content": "My dough did not rise after two hours. What went wrong?"},
    ],
    "rubric": [{"criterion": "Says the yeast may be dead or the water too hot.", "points": 5, "tags": []}],
}, "conversation")


def test_a_conversation_reaches_every_role_intact(tmp_path):
    task = CONVERSATION
    assert task.family == "open_ended"
    turns = [m.model_dump() for m in task.messages]
    with RecordingJudge() as judge:
        config = stub_config(judge, tmp_path)

        async def chain():
            async with make_clients(config) as clients:
                refs = await collect_references_async([task], clients.teacher, config, None, progress=False)
                rolls = await sample_rollouts_async([task], clients.student, config)
                return await judge_group_async(task, [r["text"] for r in refs], [r["text"] for r in rolls],
                                               clients, config, step=0)

        judged = asyncio.run(chain())
    assert not judged.failed, judged.error
    texts = [b for b in judge.bodies if not b.get("response_format") and not b.get("logprobs")]
    assert len(texts) == 4  # 2 teacher refs + 2 rollouts
    # Open-ended, so the Verifier is first asked for soft verdicts: every such request shows the whole conversation.
    soft = [b for b in judge.bodies if b.get("logprobs")]
    assert len(soft) == 4  # 4 answers x 1 criterion
    assert all(render_messages(task.messages) in b["messages"][-1]["content"] for b in soft)
    for role, name in (("teacher", "teacher_system.txt"), ("student", "student_system.txt")):
        own = packaged(f"open_ended/{name}").strip()
        sent = [b["messages"] for b in texts if b["messages"][0]["content"].startswith(own)]
        assert len(sent) == 2, role
        # Our system prompt, then the conversation's own system message, then its turns exactly as given.
        assert sent[0] == [{"role": "system", "content": f"{own}\n\n{turns[0]['content']}"}] + turns[1:]
    for marker in ('"criteria"', '"answers"'):
        (body,) = judge.role_bodies(marker)
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        assert prompts.CONVERSATION_LEAD in user
        opening = user.index("<<<CONVERSATION ")
        shown = user[user.index("\n", opening) + 1 : user.index("\n<<<END-CONVERSATION ")]
        assert shown == render_messages(task.messages)  # every turn, in order, as data
        assert all(f"{m.role.capitalize()}: {m.content}" in shown for m in task.messages)
    # The judge baseline and the GRPO dataset see it too.
    assert "<<<CONVERSATION " in judge_messages(task, "Check the yeast.", config)[1]["content"]
    from ropd_kit.train.methods import grpo_dataset

    dataset = grpo_dataset([task], config)
    assert dataset[0]["prompt"] == student_messages(task, config)
    assert task_from_columns(0, dataset[:1]) == task


def test_the_numeric_rubric_check_applies_to_numeric_families_only(tmp_path):
    # "20 seconds" appears nowhere in the task or the answers: a stray number for arithmetic, advice for open-ended.
    rubric = {"criteria": [{"id": "c1", "text": "Says to wash hands for 20 seconds.", "points": 5,
                            "category": "safety"}]}
    with RecordingJudge(rubric=rubric) as judge:
        config = stub_config(judge, tmp_path, min_criteria=1, rubric_attempts=1)

        async def induce(question):
            async with make_clients(config) as clients:
                return await induce_rubric_async(question, ["Wash your hands well."], ["Use soap."],
                                                 clients.rubricator, config)

        open_task = task_from_record({"prompt": "How should I wash my hands?"}, "open")
        assert open_task.family == "open_ended"
        assert asyncio.run(induce(open_task)).rubric is not None
        for numeric in (open_task.model_copy(update={"family": "math"}), open_task.prompt):
            outcome = asyncio.run(induce(numeric))
            assert outcome.rubric is None and "20 appears nowhere" in outcome.error
