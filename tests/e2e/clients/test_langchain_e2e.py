"""``langchain-openai``: ChatOpenAI (invoke, stream, tools, structured output) and OpenAIEmbeddings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx2
import openai
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from tests.e2e.clients.conftest import CHAT, EMBED, KEY
from tests.e2e.clients.models import HI, City
from tests.serverproc import ServerProcess

TEXT = "The quick brown fox jumps over the lazy dog."


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"It is sunny in {city}."


def chat(server: ServerProcess, **kw: Any) -> ChatOpenAI:
    settings: dict[str, Any] = {"max_tokens": 32, "temperature": 0, "max_retries": 0, "timeout": 120, **kw}
    return ChatOpenAI(base_url=server.base_url, api_key=KEY, model=CHAT, **settings)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def test_invoke(server: ServerProcess) -> None:
    msg = chat(server).invoke(HI)
    assert isinstance(msg, AIMessage) and isinstance(msg.content, str) and msg.content
    assert msg.response_metadata["finish_reason"] in {"stop", "length"}
    assert msg.response_metadata["model_name"] == CHAT
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] > 0


def test_stream(server: ServerProcess) -> None:
    chunks = list(chat(server, stream_usage=True).stream(HI))
    assert len(chunks) > 1 and all(isinstance(c, AIMessageChunk) for c in chunks)
    whole = chunks[0]
    for c in chunks[1:]:
        whole += c
    assert isinstance(whole.content, str) and whole.content
    assert whole.response_metadata["finish_reason"] in {"stop", "length"}
    assert whole.usage_metadata is not None and whole.usage_metadata["total_tokens"] > 0


def test_bind_tools_forced_tool_call(server: ServerProcess) -> None:
    llm = chat(server, max_tokens=64).bind_tools([get_weather], tool_choice="get_weather")
    msg = llm.invoke("What's the weather in Paris?")
    assert isinstance(msg, AIMessage)
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    assert len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str) and call["id"]
    assert get_weather.invoke(call["args"])  # the arguments fit the tool's own schema


def test_with_structured_output_default_method(server: ServerProcess) -> None:
    # langchain-openai's default method is "json_schema": response_format with a strict JSON schema.
    result = chat(server, max_tokens=64).with_structured_output(City).invoke("Name a city.")
    assert isinstance(result, City)


def test_with_structured_output_function_calling(server: ServerProcess) -> None:
    result = chat(server, max_tokens=64).with_structured_output(City, method="function_calling").invoke("Name a city.")
    assert isinstance(result, City)


def test_embeddings_text_path(server: ServerProcess) -> None:
    emb = OpenAIEmbeddings(model=EMBED, base_url=server.base_url, api_key=KEY, check_embedding_ctx_length=False, max_retries=0)
    docs = emb.embed_documents([TEXT, "hello"])
    query = emb.embed_query(TEXT)
    assert len(docs) == 2 and all(len(v) == 384 for v in docs)
    assert cosine(docs[0], query) >= 0.999


def test_embeddings_defaults_send_token_arrays(server: ServerProcess, tiktoken_cache: Path) -> None:
    """The defaults tokenize with tiktoken's cl100k_base (read offline from the cache) and send token ids."""
    import tiktoken

    assert tiktoken.get_encoding("cl100k_base").encode(TEXT)  # the cached table loads without a download
    sent: list[Any] = []

    def record(request: httpx2.Request) -> None:
        sent.append(json.loads(request.read())["input"])

    with httpx2.Client(timeout=120) as http, httpx2.Client(timeout=120, event_hooks={"request": [record]}) as spy:
        default = OpenAIEmbeddings(model=EMBED, base_url=server.base_url, api_key=KEY, max_retries=0, http_client=spy)
        text = OpenAIEmbeddings(
            model=EMBED, base_url=server.base_url, api_key=KEY, check_embedding_ctx_length=False, http_client=http
        )
        reference = text.embed_query(TEXT)
        try:
            vector: list[float] | None = default.embed_query(TEXT)
        except openai.BadRequestError as e:
            # Refusing token arrays is acceptable only as a clear 400, never as a silently wrong vector.
            assert e.status_code == 400
            assert "token" in e.message.lower() or "input" in e.message.lower(), e.message
            vector = None
    assert sent and all(isinstance(t, int) for t in sent[0][0]), sent  # token ids, not text
    if vector is not None:
        assert len(vector) == len(reference)
        assert cosine(vector, reference) >= 0.99
