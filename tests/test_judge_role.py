"""The "judge" baseline grades on the endpoint `RunConfig.judge_role` names (the Verifier's by default).

Two fake OpenAI-compatible endpoints in threads (test_reward.FakeJudge), one per side; no model.
"""

from __future__ import annotations

import pytest
from test_reward import GOOD, WRONG, FakeJudge, batch

from ropd_kit.config import EndpointConfig, RunConfig
from ropd_kit.llm import run_sync
from ropd_kit.reward import JudgeReward


def grade_on(tmp_path, **fields) -> tuple[list, int, int]:
    with FakeJudge(delay_s=0.0) as teacher_side, FakeJudge(delay_s=0.0) as verifier_side:
        def on(fake):
            return EndpointConfig(base_url=fake.base_url, model="fake", max_retries=0, timeout_s=30,
                                  structured_output="json_schema")

        config = RunConfig(run_dir=str(tmp_path / "run"), use_cache=False, teacher=on(teacher_side),
                           student=on(teacher_side), rubricator=on(verifier_side), verifier=on(verifier_side),
                           n_rollouts=2, verify_attempts=1, **fields)
        reward = JudgeReward(config, None, None, num_generations=2)
        try:
            rewards = run_sync(reward(**batch([("t1", "What is 6 times 7?")], [[GOOD, WRONG]])))
        finally:
            reward.close()
        return rewards, teacher_side.count("judge_score"), verifier_side.count("judge_score")


def test_the_verifier_grades_by_default(tmp_path):
    assert RunConfig().judge_role == "verifier"
    rewards, on_teacher, on_verifier = grade_on(tmp_path)
    assert rewards == pytest.approx([0.9, 0.2]) and (on_teacher, on_verifier) == (0, 2)


def test_judge_role_teacher_grades_on_the_teacher_endpoint(tmp_path):
    rewards, on_teacher, on_verifier = grade_on(tmp_path, judge_role="teacher")
    assert rewards == pytest.approx([0.9, 0.2]) and (on_teacher, on_verifier) == (2, 0)


def test_the_student_is_no_judge():
    with pytest.raises(ValueError, match="judge_role"):
        RunConfig(judge_role="student")
