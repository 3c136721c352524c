"""The TRL reward functions: grouping, s_i per rollout, None for a failed group, concurrency, what gets written.

The judge is faked at one point only — the HTTP endpoint: a tiny OpenAI-compatible server that answers like a
perfectly obedient model (a fixed two-criterion rubric, verdicts computed from the fenced answers, teacher refs that
say "Answer: 42"). Everything between TRL's call and that endpoint is the real code: the clients, the cache, rubric
induction, blind verification, parsing and scoring. The same reward against a real model is exercised in
tests/integration/test_train.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ropd_kit import rundir
from ropd_kit.config import EndpointConfig, RunConfig
from ropd_kit.llm import run_sync
from ropd_kit.reward import (
    JudgeReward,
    RubricReward,
    category_pass_rates,
    completion_texts,
    correctness_reward,
    parse_judge_score,
    truncated_flags,
)

RUBRIC = {
    "criteria": [
        {"id": "c1", "text": "The final answer is 42.", "points": 3, "category": "correctness"},
        {"id": "c2", "text": "The answer shows a calculation with '='.", "points": 1, "category": "reasoning"},
    ]
}
FENCED = re.compile(r"<<<ANSWER-(\d+) \w+>>>\n(.*?)\n<<<END-ANSWER-\1 \w+>>>", re.S)


class FakeJudge:
    """An OpenAI-compatible chat endpoint in a thread. `fail_marker` in a request makes it answer HTTP 500."""

    def __init__(self, delay_s: float = 0.2, fail_marker: str = "UNJUDGEABLE", slow_marker: str = "SLOWJUDGE",
                 slow_s: float = 4.0):
        self.delay_s = delay_s
        self.fail_marker = fail_marker
        self.slow_marker, self.slow_s = slow_marker, slow_s  # rubric requests naming slow_marker take slow_s
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def reply(self, body: dict) -> str:
        fmt = body.get("response_format") or {}
        name = (fmt.get("json_schema") or {}).get("name")
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if name == "rubric":
            return json.dumps(RUBRIC)
        if name == "verdicts":
            answers = [(int(i), text) for i, text in FENCED.findall(user)]
            return json.dumps({"answers": [
                {"answer_index": i, "judgement": ["42" in text.split("Answer:")[-1], "=" in text]} for i, text in answers
            ]})
        if name == "judge_score":
            answer = FENCED_JUDGE.search(user).group(1)
            return json.dumps({"score": 9 if "42" in answer else 2})
        return "6 * 7 = 42\nAnswer: 42"  # a teacher reference

    async def handle(self, request):
        from aiohttp import web

        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            slow = self.slow_marker in json.dumps(body) and "rubric" in json.dumps(body.get("response_format") or {})
            await asyncio.sleep(self.slow_s if slow else self.delay_s)
            if self.fail_marker in json.dumps(body):
                return web.json_response({"error": {"message": "judge exploded"}}, status=500)
            text = self.reply(body)
            return web.json_response({
                "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            })
        finally:
            with self._lock:
                self.in_flight -= 1

    def __enter__(self) -> "FakeJudge":
        from aiohttp import web

        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def start():
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self.handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]

        def serve():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, schema_name: str | None) -> int:
        return sum(1 for b in self.requests if ((b.get("response_format") or {}).get("json_schema") or {}).get("name")
                   == schema_name)


FENCED_JUDGE = re.compile(r"<<<ANSWER \w+>>>\n(.*?)\n<<<END-ANSWER \w+>>>", re.S)


@pytest.fixture
def judge():
    with FakeJudge() as fake:
        yield fake


@pytest.fixture
def config(tmp_path, judge) -> RunConfig:
    endpoint = EndpointConfig(base_url=judge.base_url, model="fake-judge", max_retries=0, timeout_s=30,
                              structured_output="json_schema")
    return RunConfig(
        run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "llm"), ref_index_dir=str(tmp_path / "refs"),
        teacher=endpoint, rubricator=endpoint, verifier=endpoint, student=endpoint,
        n_teacher_refs=2, n_rollouts=3, min_criteria=1, rubric_attempts=1, verify_attempts=1,
        rollout_max_tokens=16,
    )


def batch(tasks: list[tuple[str, str]], rollouts: list[list[str]]) -> dict:
    """Keyword arguments as TRL passes them: one row per completion, a group's rows adjacent."""
    kwargs: dict = {"prompts": [], "completions": [], "task_id": [], "question": [], "answer": [], "domain": []}
    for (task_id, question), group in zip(tasks, rollouts):
        for text in group:
            kwargs["prompts"].append([{"role": "user", "content": question}])
            kwargs["completions"].append([{"role": "assistant", "content": text}])
            kwargs["task_id"].append(task_id)
            kwargs["question"].append(question)
            kwargs["answer"].append("42")
            kwargs["domain"].append("arith")
    return kwargs


GOOD, SHORT, WRONG = "6 * 7 = 42\nAnswer: 42", "Answer: 42", "6 + 7 = 13\nAnswer: 13"


def test_rubric_reward_scores_each_rollout_from_its_groups_rubric(config, judge):
    reward = RubricReward(config, None, config.run_dir, num_generations=3)
    kwargs = batch([("t1", "What is 6 times 7?"), ("t2", "Six sevens?")], [[GOOD, SHORT, WRONG], [WRONG, GOOD, GOOD]])
    try:
        rewards = run_sync(reward(**kwargs))
    finally:
        reward.close()
    # c1 (3 points) = final answer 42, c2 (1 point) = shows '=': GOOD 4/4, SHORT 3/4, WRONG 1/4.
    assert rewards == pytest.approx([1.0, 0.75, 0.25, 0.25, 1.0, 1.0], abs=1e-4)
    assert judge.count("rubric") == 2 and judge.count("verdicts") == 2  # one rubric and one verdict call per group
    stats = reward.pop_step_stats()
    assert (stats.groups, stats.failed_groups) == (2, 0)
    assert stats.teacher_scores == pytest.approx([1.0] * 4, abs=1e-4)  # teacher refs say "6 * 7 = 42 / Answer: 42"

    run = config.path
    assert {r["task_id"] for r in rundir.read_jsonl(run / rundir.RUBRICS)} == {"t1", "t2"}
    verdicts = rundir.read_jsonl(run / rundir.VERDICTS)
    assert sorted(v["source"] for v in verdicts) == ["student"] * 6 + ["teacher"] * 4
    assert len(rundir.read_jsonl(run / rundir.ROLLOUTS)) == 6
    assert rundir.read_jsonl(run / rundir.JUDGE_RAW)


def test_all_groups_of_a_step_are_judged_at_once(config, judge):
    reward = RubricReward(config, None, None, num_generations=3)
    tasks = [(f"t{i}", f"Question {i}: what is 6 times 7?") for i in range(4)]
    try:
        run_sync(reward(**batch(tasks, [[GOOD, SHORT, WRONG]] * 4)))
    finally:
        reward.close()
    # Each request takes 0.2 s at the fake judge; four groups judged one after another would never overlap.
    assert judge.max_in_flight >= 4


def test_a_failed_group_gets_none_for_each_rollout_and_is_counted(config, judge):
    reward = RubricReward(config, None, config.run_dir, num_generations=3)
    kwargs = batch([("ok", "What is 6 times 7?"), ("bad", "UNJUDGEABLE question")], [[GOOD, SHORT, WRONG]] * 2)
    try:
        rewards = run_sync(reward(**kwargs))
    finally:
        reward.close()
    assert rewards[:3] == pytest.approx([1.0, 0.75, 0.25], abs=1e-4)
    assert rewards[3:] == [None, None, None]
    assert (reward.total_groups, reward.total_failed) == (2, 1)
    assert reward.failure_rate == 0.5
    failed = [r for r in rundir.read_jsonl(config.path / rundir.RUBRICS) if r["task_id"] == "bad"]
    assert failed and failed[0]["error"]


def test_groups_not_judged_by_the_reward_deadline_get_none_and_are_counted(config, judge):
    config = config.model_copy(update={"reward_deadline_s": 1.5})
    reward = RubricReward(config, None, config.run_dir, num_generations=3)
    # The rubric of the SLOWJUDGE task takes 4 s at the judge: past the 1.5 s deadline; the other group is done by then.
    kwargs = batch([("ok", "What is 6 times 7?"), ("slow", "SLOWJUDGE: what is 6 times 7?")], [[GOOD, SHORT, WRONG]] * 2)
    try:
        rewards = run_sync(reward(**kwargs))
    finally:
        reward.close()
    assert rewards[3:] == [None, None, None]
    assert (reward.total_groups, reward.total_failed) == (2, 1)
    failed = [r for r in rundir.read_jsonl(config.path / rundir.RUBRICS) if r["task_id"] == "slow"]
    assert failed and "deadline" in failed[0]["error"]
    assert rewards[:3] == pytest.approx([1.0, 0.75, 0.25], abs=1e-4)


def test_groups_must_be_adjacent(config):
    reward = RubricReward(config, None, None, num_generations=3)
    kwargs = batch([("a", "q a"), ("b", "q b")], [[GOOD] * 3] * 2)
    kwargs = {k: (v[:2] + v[3:4] + v[2:3] + v[4:] if isinstance(v, list) else v) for k, v in kwargs.items()}
    with pytest.raises(ValueError, match="adjacent"):
        run_sync(reward(**kwargs))


def test_teacher_refs_come_from_the_index_once_collected(config, judge):
    kwargs = batch([("t1", "What is 6 times 7?")], [[GOOD, SHORT, WRONG]])
    first = RubricReward(config, None, None, num_generations=3)
    run_sync(first(**kwargs))
    first.close()
    teacher_requests = judge.count(None)
    assert teacher_requests == config.n_teacher_refs
    # A new reward (a new run) with the same teacher settings replays the refs from the index: no teacher request.
    second = RubricReward(config.model_copy(update={"use_cache": False}), None, None, num_generations=3)
    run_sync(second(**kwargs))
    second.close()
    assert judge.count(None) == teacher_requests


def test_trl_sees_async_callables_with_names(config):
    from trl.trainer.utils import get_callable_name, is_async_callable

    rubric = RubricReward(config, None, None, num_generations=3)
    judge_reward = JudgeReward(config, None, None, num_generations=3)
    assert is_async_callable(rubric) and get_callable_name(rubric) == "rubric_reward"
    assert is_async_callable(judge_reward) and get_callable_name(judge_reward) == "judge_reward"
    assert not is_async_callable(correctness_reward) and get_callable_name(correctness_reward) == "correctness_reward"


def test_judge_reward_scales_the_0_to_10_grade(config, judge):
    reward = JudgeReward(config, None, config.run_dir, num_generations=3)
    kwargs = batch([("t1", "What is 6 times 7?")], [[GOOD, WRONG, GOOD]])
    try:
        rewards = run_sync(reward(**kwargs))
    finally:
        reward.close()
    assert rewards == pytest.approx([0.9, 0.2, 0.9])
    assert judge.count("judge_score") == 3  # one grade per rollout, no rubric and no teacher refs
    assert judge.count("rubric") == judge.count(None) == 0
    assert len(rundir.read_jsonl(config.path / rundir.VERDICTS)) == 3


def test_correctness_reward():
    completions = [[{"role": "assistant", "content": t}] for t in (GOOD, WRONG, "no number")]
    assert correctness_reward(completions, answer=["42", "42", "42"]) == [1.0, 0.0, 0.0]
    assert correctness_reward(["Answer: 1"], answer=[None]) == [None]


def test_correctness_reward_checks_each_row_by_its_tasks_family():
    import json

    from ropd_kit.data import Task, render_choices

    choices = ("450", "120", "15", "45")
    tasks = [Task(id="c", prompt=render_choices("75% of 60?", choices), answer="D", choices=choices),
             Task(id="m", prompt="Solve 3x + 5 = 0.", answer="-\\frac{5}{3}", family="math"),
             Task(id="o", prompt="How do I fix a slow drain?", rubric=[{"criterion": "Mentions a plunger.", "points": 5}])]
    # The columns train.grpo_dataset writes for TRL.
    columns = {"task_record": [json.dumps(t.to_record()) for t in tasks], "answer": [t.answer for t in tasks]}
    texts = ["75% of 60 is 45.\nAnswer: 45", "So the answer is -5/3.", "Use a plunger."]
    # The letter read from the option's text, the math span without its full stop; open-ended: nothing to check.
    assert correctness_reward(texts, **columns) == [1.0, 1.0, None]
    assert correctness_reward(["Answer: B or D", "Answer: 5/3", "x"], **columns) == [0.0, 0.0, None]


@given(st.integers(min_value=0, max_value=10), st.text(alphabet="abc ,.\n", max_size=30))
def test_judge_score_in_json_anywhere_in_the_reply(score: int, prose: str):
    assert parse_judge_score(f'{prose}{{"score": {score}}}{prose}') == pytest.approx(score / 10)


@pytest.mark.parametrize("text", ['{"score": 11}', '{"score": -1}', "I cannot grade this.", '{"grade": 5}', ""])
def test_unreadable_or_out_of_range_grades_are_failures(text: str):
    assert parse_judge_score(text) is None


def test_reading_trl_batches():
    assert completion_texts(["plain", [{"role": "assistant", "content": "chat"}]]) == ["plain", "chat"]
    assert truncated_flags([[5, 6, 7], [5, 2], [5, 6]], max_tokens=3, eos_ids={2}) == [True, False, False]
    assert truncated_flags([[5, 6, 2]], max_tokens=3, eos_ids={2}) == [False]


def test_category_pass_rates_count_student_verdicts_only():
    from ropd_kit.pipeline import GroupJudgement

    result = GroupJudgement(
        "t", 1, {"criteria": RUBRIC["criteria"]},
        [
            {"source": "student", "judgements": [True, False]},
            {"source": "student", "judgements": [False, False]},
            {"source": "teacher", "judgements": [True, True]},
        ],
        [0.75, 0.0], [1.0], False,
    )
    assert category_pass_rates([result]) == {"correctness": 0.5, "reasoning": 0.0}
