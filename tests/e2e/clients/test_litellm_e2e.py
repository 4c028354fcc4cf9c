"""``litellm`` as a client of an OpenAI-compatible server (its price list read from the wheel: see conftest)."""

from __future__ import annotations

import os

import litellm
import pytest

from tests.e2e.clients.conftest import KEY
from tests.e2e.clients.models import HI
from tests.serverproc import ServerProcess

MODEL = "openai/gpt-4o-mini"  # litellm's "openai/" prefix: any OpenAI-compatible api_base
# litellm's lazily imported GitHub Copilot module declares a TypedDict that pydantic warns about (a
# library-internal UserWarning; this project's pytest settings turn warnings into errors).
pytestmark = pytest.mark.filterwarnings("ignore:.*TypedDict class .* the `ReadOnly` qualifier:UserWarning")

MESSAGES = [{"role": "user", "content": HI}]


def test_the_cost_map_was_not_downloaded() -> None:
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert "gpt-4o-mini" in litellm.model_cost


def test_completion(server: ServerProcess) -> None:
    r = litellm.completion(model=MODEL, api_base=server.base_url, api_key=KEY, messages=MESSAGES, max_tokens=16, temperature=0)
    assert isinstance(r, litellm.ModelResponse)
    choice = r.choices[0]
    assert choice.finish_reason in {"stop", "length"}
    assert isinstance(choice.message.content, str) and choice.message.content
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming(server: ServerProcess) -> None:
    stream = litellm.completion(
        model=MODEL, api_base=server.base_url, api_key=KEY, messages=MESSAGES, max_tokens=16, temperature=0, stream=True
    )
    chunks = list(stream)
    assert len(chunks) > 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
