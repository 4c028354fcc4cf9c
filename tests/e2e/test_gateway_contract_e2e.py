"""The contract tests, rerun through a gateway: the official SDK against a Faceplate whose models
are served by another Faceplate process (``kind = "faceplate"``) over HTTP.

The tests are the very functions of the direct suites, imported: here ``server`` is the gateway,
so every body and stream chunk the SDK validates has crossed the remote engine (the request
rebuilt for the upstream, its stream parsed back into events and translated again). The upstream
is the session's own server with the bundled models, and its key is one the client never sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e.conftest import E2E_KEY
from tests.e2e.test_chat_e2e import (  # noqa: F401 - collected again, against the gateway
    test_chat_plain,
    test_chat_streamed_matches_non_streamed,
    test_chat_system_developer_and_parts,
    test_error_classes,
    test_legacy_completions,
    test_logprobs,
    test_max_tokens_gives_length,
    test_models,
    test_n3_streamed_interleaved,
    test_no_usage_chunk_unless_asked,
    test_seed_determinism,
    test_stop_sequences,
)
from tests.e2e.test_embeddings_e2e import (  # noqa: F401
    sdk,
    st,
    test_default_base64_and_float_give_the_same_vectors,
    test_many_inputs_in_one_request,
    test_paraphrase_is_closer_than_an_unrelated_sentence,
    test_token_arrays_are_openai_ids,
    test_unknown_model_is_404,
    test_usage_counts_the_tokens_the_model_sees,
    test_vectors_equal_sentence_transformers,
)
from tests.e2e.test_structured_e2e import (  # noqa: F401
    test_json_object_mode,
    test_legacy_functions,
    test_parse_with_pydantic,
    test_streamed_tool_calls_assemble,
    test_tool_choice_none_and_auto,
    test_tool_choice_required_and_named,
    test_two_turn_tool_loop,
    test_unknown_named_tool_is_400,
)
from tests.gateway import start_gateway
from tests.serverproc import ServerProcess

CHAT, EMBED = "smollm2-135m-instruct", "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def upstream(server: ServerProcess) -> ServerProcess:
    """The session's direct server (bundled models, key E2E_KEY) is the upstream."""
    return server


@pytest.fixture(scope="module")
def server(upstream: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:  # noqa: F811
    """The gateway: no model of its own; both ids are pools of one remote member (kind probed)."""
    members = [{"id": model, "url": upstream.root, "api_key": E2E_KEY} for model in (CHAT, EMBED)]
    gateway = start_gateway(members, log_dir=tmp_path_factory.mktemp("gateway"), args=["--api-key", E2E_KEY])
    yield gateway
    gateway.stop()


def test_the_gateway_serves_through_its_upstream(server: ServerProcess, upstream: ServerProcess) -> None:
    """Not a tautology of the imported tests: the gateway's models are remote pools probed as faceplate."""
    auth = {"authorization": f"Bearer {E2E_KEY}"}
    health = httpx.get(f"{server.root}/health", headers=auth).json()
    pool = health["models"][CHAT]["upstreams"]
    assert [(m["url"], m["kind"], m["model"]) for m in pool] == [(upstream.root, "faceplate", CHAT)]
    assert health["models"][EMBED]["kind"] == "embedding"
    before = httpx.get(f"{upstream.root}/health", headers=auth).json()["models"][CHAT]["completed"]
    client = openai.OpenAI(base_url=server.base_url, api_key=E2E_KEY, max_retries=0)
    client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    after = httpx.get(f"{upstream.root}/health", headers=auth).json()["models"][CHAT]["completed"]
    assert after == before + 1
