"""The local server's slot context sized from the config (offline.serve.slot_context_need / server_ctx_size).

In-memory: nothing is started (a context too small is refused before any server or model file is looked at).
"""

from __future__ import annotations

import pytest

from ropd_kit.config import ConfigError, RunConfig
from ropd_kit.offline import serve
from ropd_kit.offline.serve import FEEDBACK_TOKENS, FENCE_TOKENS, MIN_SLOT_CTX, local_endpoints, server_ctx_size
from ropd_kit.offline.serve import slot_context_need


def test_each_part_of_the_verifier_request_comes_from_a_config_size():
    config = RunConfig(n_teacher_refs=2, teacher_max_tokens=100, n_rollouts=3, rollout_max_tokens=50,
                       max_prompt_tokens=64, rubricator_max_tokens=200, verifier_max_tokens=150, verify_attempts=2)
    parts = slot_context_need(config)["verifier"]
    text = serve._prompt_tokens("verifier_system.txt", "verifier_user.txt")
    assert parts == {
        "prompt text": text, "question": 64, "rubric": 200,
        "2 refs": 2 * (100 + FENCE_TOKENS), "3 rollouts": 3 * (50 + FENCE_TOKENS),
        "output": 150, "1 retry": 150 + FEEDBACK_TOKENS,
    }
    # One verifier call shows at most max_answers_per_call answers, the longer references first.
    chunked = slot_context_need(config.model_copy(update={"max_answers_per_call": 2}))["verifier"]
    assert chunked["2 refs"] == 2 * (100 + FENCE_TOKENS) and chunked["0 rollouts"] == 0


def test_the_rubricator_request_grows_with_every_retry_it_may_make():
    config = RunConfig(rubric_attempts=1)
    once = sum(slot_context_need(config, ["rubricator"])["rubricator"].values())
    thrice = sum(slot_context_need(config.model_copy(update={"rubric_attempts": 3}), ["rubricator"])[
        "rubricator"].values())
    assert thrice - once == 2 * (config.rubricator_max_tokens + FEEDBACK_TOKENS)


def test_the_default_sizes_need_more_than_the_old_4096_per_slot_and_get_it():
    config = RunConfig()
    # 4 refs x 512 + 8 rollouts x 384 is 5120 tokens of answers alone.
    needed = max(sum(p.values()) for p in slot_context_need(config).values())
    assert needed > 4 * 512 + 8 * 384 > MIN_SLOT_CTX
    ctx = server_ctx_size(config)
    assert ctx % config.server_parallel == 0 and ctx // config.server_parallel >= needed


def test_small_configs_keep_at_least_the_old_slot_size():
    config = RunConfig(n_teacher_refs=1, teacher_max_tokens=16, n_rollouts=2, rollout_max_tokens=16,
                       rubricator_max_tokens=64, verifier_max_tokens=32, max_prompt_tokens=16, server_parallel=2)
    assert server_ctx_size(config) == 2 * MIN_SLOT_CTX


def test_only_the_roles_served_locally_count():
    remote = {"base_url": "https://api.example.com/v1", "model": "m"}
    config = RunConfig(rubricator=remote, verifier=remote)  # the teacher and the student stay local
    assert server_ctx_size(config) == MIN_SLOT_CTX * config.server_parallel  # no 12-answer verifier prompt here


def test_an_explicit_context_too_small_is_refused_at_start_with_the_numbers():
    config = RunConfig(server_ctx_size=16384)  # the old default: 4096 per slot over 4 slots
    with pytest.raises(ConfigError) as caught, local_endpoints(config):
        pytest.fail("a server was started")
    message = str(caught.value)
    needed = sum(slot_context_need(config)["verifier"].values())
    for text in ("server_ctx_size=16384", "server_parallel=4", "leaves 4096 tokens per request",
                 f"verifier request of this config can take about {needed}", "4 refs 2176", "8 rollouts 3328",
                 f"at least {needed * 4}"):
        assert text in message
    big_enough = config.model_copy(update={"server_ctx_size": needed * 4})
    assert server_ctx_size(big_enough) == needed * 4  # an explicit value that fits is used as given


def test_a_local_server_client_waits_in_its_queue_instead_of_timing_out():
    from ropd_kit.config import EndpointConfig

    # Defaults (and a config read back from config.json, where every field is set to them) get the local limits.
    default = EndpointConfig.model_validate_json(EndpointConfig().model_dump_json())
    assert serve.local_client_limits(default, 4) == {"timeout_s": serve.LOCAL_TIMEOUT_S, "max_concurrency": 4}
    assert serve.local_client_limits(default, 16) == {"timeout_s": serve.LOCAL_TIMEOUT_S}  # never more than asked
    chosen = EndpointConfig(timeout_s=45, max_concurrency=2)
    assert serve.local_client_limits(chosen, 4) == {}
    # The batch hands the notebooks plain URLs: the limits travel with them as parameters.
    config = RunConfig.from_params(verifier_base_url="http://127.0.0.1:9/v1", verifier_model="m",
                                   verifier_timeout_s=serve.LOCAL_TIMEOUT_S, verifier_max_concurrency=4)
    assert (config.verifier.timeout_s, config.verifier.max_concurrency) == (serve.LOCAL_TIMEOUT_S, 4)
