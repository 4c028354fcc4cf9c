"""The official ``openai`` SDK's helpers, sync and async: ``parse``, the ``stream`` helper, embeddings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from tests.e2e.clients.conftest import CHAT, EMBED, KEY
from tests.e2e.clients.models import HI, City
from tests.serverproc import ServerProcess


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture
async def aclient(server: ServerProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120) as c:
        yield c


def test_parse_fills_the_pydantic_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=CHAT, messages=[{"role": "user", "content": "Name a city."}], response_format=City, max_tokens=64, temperature=0
    )
    choice = completion.choices[0]
    assert completion.model == CHAT
    assert choice.finish_reason == "stop"
    assert choice.message.refusal is None
    assert isinstance(choice.message.parsed, City)
    assert City.model_validate_json(choice.message.content or "") == choice.message.parsed


async def test_async_parse_fills_the_pydantic_model(aclient: openai.AsyncOpenAI) -> None:
    completion = await aclient.chat.completions.parse(
        model=CHAT, messages=[{"role": "user", "content": "Name a city."}], response_format=City, max_tokens=64, temperature=0
    )
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(completion.choices[0].message.parsed, City)


def test_stream_helper_yields_events_and_a_final_completion(client: openai.OpenAI) -> None:
    deltas: list[str] = []
    with client.chat.completions.stream(
        model=CHAT, messages=[{"role": "user", "content": HI}], max_tokens=64, temperature=0
    ) as stream:
        kinds = set()
        for event in stream:
            kinds.add(event.type)
            if event.type == "content.delta":
                deltas.append(event.delta)
        final = stream.get_final_completion()
    assert {"chunk", "content.delta", "content.done"} <= kinds
    assert final.model == CHAT
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "".join(deltas) != ""


def test_stream_helper_parses_structured_output(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=CHAT, messages=[{"role": "user", "content": "Name a city."}], response_format=City, max_tokens=64, temperature=0
    ) as stream:
        done = [e for e in stream if e.type == "content.done"]
        final = stream.get_final_completion()
    assert len(done) == 1 and isinstance(done[0].parsed, City)
    assert final.choices[0].message.parsed == done[0].parsed


async def test_async_stream_helper(aclient: openai.AsyncOpenAI) -> None:
    async with aclient.chat.completions.stream(
        model=CHAT, messages=[{"role": "user", "content": HI}], max_tokens=64, temperature=0
    ) as stream:
        kinds = {event.type async for event in stream}
        final = await stream.get_final_completion()
    assert "content.delta" in kinds
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content


def test_embeddings(client: openai.OpenAI) -> None:
    one = client.embeddings.create(model=EMBED, input="The food was delicious.")
    assert one.model == EMBED and one.object == "list"
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    many = client.embeddings.create(model=EMBED, input=["first", "second", "third"])
    assert [d.index for d in many.data] == [0, 1, 2]
    assert one.usage.prompt_tokens > 0 and many.usage.prompt_tokens > 0


async def test_async_embeddings_base64_matches_float(aclient: openai.AsyncOpenAI) -> None:
    plain = await aclient.embeddings.create(model=EMBED, input="hello", encoding_format="float")
    packed = await aclient.embeddings.create(model=EMBED, input="hello")  # the SDK asks for base64 and decodes it
    assert packed.data[0].embedding == pytest.approx(plain.data[0].embedding, abs=1e-6)
