"""Engine requests -> upstream bodies: field names per kind, extras, tools, formats, logprobs, streaming.

Whatever an upstream would silently drop is a 400 naming the parameter, never quietly lost."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from faceplate.engines.base import (
    ChatRequest,
    CompletionRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    Tool,
    ToolCall,
    ToolChoice,
)
from faceplate.engines.remote.kinds import KINDS
from faceplate.engines.remote.requests import Caps, chat_body, completion_body
from faceplate.errors import InvalidRequest

MESSAGES = (Message("system", "Be brief."), Message("user", "Hi"))
WEATHER = Tool("get_weather", "Weather in a city", {"type": "object", "properties": {"city": {"type": "string"}}})


def chat(**kw: Any) -> ChatRequest:
    return ChatRequest("req-1", kw.pop("messages", MESSAGES), **kw)


def body_for(kind: str, req: ChatRequest | CompletionRequest, n: int = 1, **caps: Any) -> dict[str, Any]:
    k = KINDS[kind]
    c = replace(Caps.seed(k), **caps)
    if isinstance(req, ChatRequest):
        return chat_body(req, "up-model", n, k, c)
    return completion_body(req, "up-model", n, k, c)


def refused(kind: str, req: ChatRequest | CompletionRequest, **caps: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        body_for(kind, req, **caps)
    err = info.value
    assert err.status == 400 and isinstance(err.param, str) and err.param
    assert err.body()["error"]["type"] == "invalid_request_error"
    return err


# ---------------------------------------------------------------- max_tokens


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("openai", "max_completion_tokens"),
        ("vllm", "max_completion_tokens"),
        ("sglang", "max_completion_tokens"),
        ("faceplate", "max_completion_tokens"),
        ("llama-server", "max_tokens"),
        ("tgi", "max_tokens"),
        ("ollama", "max_tokens"),
    ],
)
def test_chat_max_tokens_field_per_kind(kind: str, field: str) -> None:
    body = body_for(kind, chat(sampling=SamplingParams(max_tokens=17)))
    assert body[field] == 17
    other = {"max_tokens", "max_completion_tokens"} - {field}
    assert not other & body.keys()


def test_chat_max_tokens_follows_probed_caps_over_kind() -> None:
    req = chat(sampling=SamplingParams(max_tokens=9))
    assert body_for("vllm", req, max_completion_tokens=False)["max_tokens"] == 9
    assert body_for("llama-server", req, max_completion_tokens=True)["max_completion_tokens"] == 9


def test_completions_always_take_max_tokens() -> None:
    body = body_for("vllm", CompletionRequest("r", "Once", SamplingParams(max_tokens=5)))
    assert body["max_tokens"] == 5 and "max_completion_tokens" not in body


def test_no_max_tokens_sends_none() -> None:
    body = body_for("openai", chat())
    assert "max_tokens" not in body and "max_completion_tokens" not in body


# ---------------------------------------------------------------- sampling and extras


def test_plain_sampling_fields() -> None:
    s = SamplingParams(
        temperature=0.3,
        top_p=0.9,
        stop=("\n\n", "END"),
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias=((42, -100.0), (7, 2.5)),
    )
    body = body_for("openai", chat(sampling=s))
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["stop"] == ["\n\n", "END"] and body["seed"] == 7
    assert body["presence_penalty"] == 0.5 and body["frequency_penalty"] == -0.5
    assert body["logit_bias"] == {"42": -100.0, "7": 2.5}


def test_default_sampling_sends_no_optional_fields() -> None:
    body = body_for("openai", chat())
    for absent in ("stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "top_k", "min_p"):
        assert absent not in body
    assert "n" not in body


EXTRAS = SamplingParams(top_k=40, min_p=0.05, repetition_penalty=1.1)


@pytest.mark.parametrize("kind", ["vllm", "sglang", "faceplate"])
def test_extras_pass_by_their_own_names(kind: str) -> None:
    body = body_for(kind, chat(sampling=EXTRAS))
    assert (body["top_k"], body["min_p"], body["repetition_penalty"]) == (40, 0.05, 1.1)


def test_llama_server_takes_repeat_penalty() -> None:
    body = body_for("llama-server", chat(sampling=EXTRAS))
    assert (body["top_k"], body["min_p"], body["repeat_penalty"]) == (40, 0.05, 1.1)
    assert "repetition_penalty" not in body
    body = body_for("llama-server", CompletionRequest("r", "x", EXTRAS))
    assert body["repeat_penalty"] == 1.1 and "repetition_penalty" not in body


@pytest.mark.parametrize("kind", ["openai", "ollama", "tgi"])
@pytest.mark.parametrize(
    ("sampling", "param"),
    [
        (SamplingParams(top_k=40), "top_k"),
        (SamplingParams(min_p=0.1), "min_p"),
        (SamplingParams(repetition_penalty=1.2), "repetition_penalty"),
    ],
)
def test_extras_refused_where_they_would_be_dropped(kind: str, sampling: SamplingParams, param: str) -> None:
    err = refused(kind, chat(sampling=sampling))
    assert err.param == param and err.code == "unsupported_parameter"
    assert refused(kind, CompletionRequest("r", "x", sampling)).param == param


def test_extras_at_their_off_values_are_not_sent() -> None:
    off = SamplingParams(top_k=0, min_p=0.0, repetition_penalty=1.0)
    body = body_for("openai", chat(sampling=off))  # no 400: nothing to drop
    assert not {"top_k", "min_p", "repetition_penalty", "repeat_penalty"} & body.keys()


def test_ignore_eos_only_where_the_kind_takes_it() -> None:
    assert body_for("vllm", chat(sampling=SamplingParams(ignore_eos=True)))["ignore_eos"] is True
    assert refused("faceplate", chat(sampling=SamplingParams(ignore_eos=True))).param == "ignore_eos"


# ---------------------------------------------------------------- tools


def test_tools_and_choice_auto() -> None:
    body = body_for("vllm", chat(tools=(WEATHER,), tool_choice=ToolChoice("auto"), parallel_tool_calls=False))
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER.parameters},
        }
    ]
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False


def test_tool_choice_function_and_required() -> None:
    body = body_for("vllm", chat(tools=(WEATHER,), tool_choice=ToolChoice("function", "get_weather")))
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "parallel_tool_calls" not in body
    assert body_for("vllm", chat(tools=(WEATHER,), tool_choice=ToolChoice("required")))["tool_choice"] == "required"


@pytest.mark.parametrize("choice", [ToolChoice("required"), ToolChoice("function", "get_weather")])
def test_forced_tool_choice_refused_by_ollama(choice: ToolChoice) -> None:
    assert Caps.seed(KINDS["ollama"]).tool_choice_forced is False
    err = refused("ollama", chat(tools=(WEATHER,), tool_choice=choice))
    assert err.param == "tool_choice" and choice.mode in err.message


def test_ollama_takes_auto_tools() -> None:
    body = body_for("ollama", chat(tools=(WEATHER,), tool_choice=ToolChoice("auto")))
    assert body["tool_choice"] == "auto" and len(body["tools"]) == 1


@pytest.mark.parametrize("kind", ["ollama", "vllm"])
def test_tool_choice_none_drops_the_tools(kind: str) -> None:
    body = body_for(kind, chat(tools=(WEATHER,), tool_choice=ToolChoice("none")))
    assert "tools" not in body and "tool_choice" not in body


def test_tools_refused_without_the_capability_naming_the_request_field() -> None:
    req = chat(tools=(WEATHER,), tool_choice=ToolChoice("auto"), tools_param="functions")
    assert refused("vllm", req, tools=False).param == "functions"


def test_history_with_tool_calls_round_trips() -> None:
    history = (
        Message("user", "Weather?"),
        Message("assistant", None, tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),)),
        Message("tool", "18C", tool_call_id="call_1"),
        Message("user", "Thanks", name="ann"),
    )
    msgs = body_for("openai", chat(messages=history))["messages"]
    assert msgs[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        ],
    }
    assert msgs[2] == {"role": "tool", "content": "18C", "tool_call_id": "call_1"}
    assert msgs[3] == {"role": "user", "content": "Thanks", "name": "ann"}


# ---------------------------------------------------------------- response formats


def test_json_schema_passed_with_name_and_strict() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = body_for("vllm", chat(response_format=ResponseFormat("json_schema", schema, "thing", True)))
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    assert body_for("vllm", chat(response_format=ResponseFormat("json_object")))["response_format"] == {"type": "json_object"}
    assert "response_format" not in body_for("vllm", chat())


@pytest.mark.parametrize("fmt", [ResponseFormat("json_schema", {"type": "object"}), ResponseFormat("json_object")])
def test_structured_output_refused_without_the_capability(fmt: ResponseFormat) -> None:
    assert refused("vllm", chat(response_format=fmt), json_schema=False).param == "response_format"


# ---------------------------------------------------------------- logprobs


def test_chat_logprobs() -> None:
    body = body_for("vllm", chat(sampling=SamplingParams(top_logprobs=3)))
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    body = body_for("vllm", chat(sampling=SamplingParams(top_logprobs=0)))
    assert body["logprobs"] is True and body["top_logprobs"] == 0
    assert "logprobs" not in body_for("vllm", chat())


def test_completion_logprobs_are_an_integer() -> None:
    body = body_for("vllm", CompletionRequest("r", "x", SamplingParams(top_logprobs=2)))
    assert body["logprobs"] == 2 and "top_logprobs" not in body


def test_logprobs_refused_by_ollama() -> None:
    assert refused("ollama", chat(sampling=SamplingParams(top_logprobs=1))).param == "logprobs"
    assert refused("ollama", CompletionRequest("r", "x", SamplingParams(top_logprobs=1))).param == "logprobs"


# ---------------------------------------------------------------- streaming, n, prompts


@pytest.mark.parametrize("usage", [True, False])
def test_always_streams_and_asks_usage_only_when_honoured(usage: bool) -> None:
    for req in (chat(), CompletionRequest("r", "x")):
        body = body_for("vllm", req, stream_usage=usage)
        assert body["stream"] is True
        assert body.get("stream_options") == ({"include_usage": True} if usage else None)


def test_n_and_model() -> None:
    body = body_for("vllm", chat(), n=3)
    assert body["n"] == 3 and body["model"] == "up-model"
    assert body_for("vllm", CompletionRequest("r", "x"), n=2)["n"] == 2


def test_completion_prompts() -> None:
    assert body_for("vllm", CompletionRequest("r", "Once upon"))["prompt"] == "Once upon"
    assert body_for("vllm", CompletionRequest("r", (1, 2, 3)))["prompt"] == [1, 2, 3]
    assert "echo" not in body_for("vllm", CompletionRequest("r", "x", echo=True))  # echo is added by Faceplate


def test_echo_with_a_token_prompt_refused() -> None:
    assert refused("vllm", CompletionRequest("r", (1, 2, 3), echo=True)).param == "echo"


def test_endpoints_the_upstream_lacks() -> None:
    with pytest.raises(InvalidRequest, match="chat"):
        body_for("vllm", chat(), chat=False)
    with pytest.raises(InvalidRequest, match="completions"):
        body_for("vllm", CompletionRequest("r", "x"), completions=False)


# ---------------------------------------------------------------- capabilities


def test_caps_seed_from_kind() -> None:
    ollama = Caps.seed(KINDS["ollama"])
    assert (ollama.max_n, ollama.logprobs, ollama.tool_choice_forced, ollama.max_completion_tokens) == (1, False, False, False)
    assert Caps.seed(KINDS["tgi"]).embeddings is False
    assert Caps.seed(KINDS["vllm"]) == Caps()


def test_caps_meet_takes_min_n_and_and_of_flags() -> None:
    a = Caps(max_n=8, logprobs=False, tools=True, stream_usage=True, embedding_dimensions=None)
    b = Caps(max_n=2, logprobs=True, tools=False, stream_usage=True, embedding_dimensions=384)
    met = a.meet(b)
    assert met == b.meet(a)
    assert met.max_n == 2
    assert (met.logprobs, met.tools, met.stream_usage, met.chat) == (False, False, True, True)
    assert met.embedding_dimensions == 384
    assert Caps().meet(Caps()) == Caps()
