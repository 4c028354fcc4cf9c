"""What each mockai flavour does differently: error bodies, request rules, and the engine-specific
load and info endpoints a gateway polls.

The deviations are the ones SCALEOUT.md §3/§4 says an adapter must normalise:

- ``openai``: the reference. Errors ``{"error":{message,type,param,code:str|null}}``; unknown
  request fields are refused with 400 ("Unrecognized request argument supplied: X").
- ``vllm``: errors ``{"object":"error","message","type":"BadRequestError","param":null,"code":400}``
  (flat, integer code); extra sampling fields (top_k, min_p, repetition_penalty, ...) accepted.
- ``sglang``: like openai (wire format), plus ``GET /get_load``; extra sampling fields accepted.
- ``llama-server``: streams always carry ``usage`` + ``timings`` on the finishing chunk; n>1 is a
  400 ``{"error":{"code":400,"message":"Only one completion choice is allowed","type":...}}``.
- ``tgi``: errors ``{"error":"text","error_type":"validation"}``, validation status 422; n>1 refused;
  no /v1/embeddings.
- ``ollama``: ignores ``tool_choice`` (always "auto", never forced); n>1 silently answers one choice.
"""

from __future__ import annotations

import http
import json
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.upstreams.mock_state import MockState

FLAVOURS = ("openai", "vllm", "sglang", "llama-server", "tgi", "ollama")

# OpenAI's request fields (tests/openapi.json), for the openai flavour's "Unrecognized request argument".
CHAT_FIELDS = frozenset(
    [
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "messages",
        "metadata",
        "modalities",
        "model",
        "moderation",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    ]
)
COMPLETION_FIELDS = frozenset(
    [
        "best_of",
        "echo",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "max_tokens",
        "model",
        "n",
        "presence_penalty",
        "prompt",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "suffix",
        "temperature",
        "top_p",
        "user",
    ]
)
EMBEDDING_FIELDS = frozenset(["dimensions", "encoding_format", "input", "model", "user"])


@dataclass(frozen=True)
class Flavour:
    name: str
    strict_fields: bool  # refuse fields OpenAI does not define (only OpenAI itself does)
    n: str  # "many": honours n; "refuse": error for n>1; "one": silently answers one choice
    always_stream_usage: bool  # llama-server: usage + timings on the finishing chunk of every stream
    honours_tool_choice: bool  # False: tool_choice treated as "auto" (never forces a call)
    embeddings: bool
    validation_status: int  # the status of the engine's own validation errors
    max_completion_tokens: bool = True  # False: TGI, whose chat API knows max_tokens and ignores the newer name


_FLAVOURS = {
    "openai": Flavour("openai", True, "many", False, True, True, 400),
    "vllm": Flavour("vllm", False, "many", False, True, True, 400),
    "sglang": Flavour("sglang", False, "many", False, True, True, 400),
    "llama-server": Flavour("llama-server", False, "refuse", True, True, True, 400),
    "tgi": Flavour("tgi", False, "refuse", False, True, False, 422, max_completion_tokens=False),
    "ollama": Flavour("ollama", False, "one", False, False, True, 400),
}


def get_flavour(name: str) -> Flavour:
    if name not in _FLAVOURS:
        raise ValueError(f"unknown flavour {name!r}; one of {', '.join(FLAVOURS)}")
    return _FLAVOURS[name]


def n_refusal(flavour: Flavour) -> str:
    if flavour.name == "llama-server":
        return "Only one completion choice is allowed"
    return "n > 1 is not supported"


_OPENAI_TYPES = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
                 403: ("invalid_request_error", None), 404: ("invalid_request_error", "model_not_found"),
                 429: ("requests", "rate_limit_exceeded")}  # fmt: skip
_LLAMA_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 501: "not_supported_error", 503: "unavailable_error"}  # fmt: skip


def error_body(flavour: Flavour, status: int, message: str) -> dict[str, Any]:
    """The JSON body this flavour answers an HTTP error with."""
    name = flavour.name
    if name == "vllm":
        phrase = http.HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "") if status in _STATUSES else ""
        err_type = phrase if phrase.endswith("Error") else f"{phrase}Error"  # 400 BadRequestError, 404 NotFoundError
        return {"object": "error", "message": message, "type": err_type, "param": None, "code": status}
    if name == "llama-server":
        return {"error": {"code": status, "message": message, "type": _LLAMA_TYPES.get(status, "server_error")}}
    if name == "tgi":
        kind = {422: "validation", 400: "validation", 429: "overloaded"}.get(status, "generation")
        return {"error": message, "error_type": kind}
    if name == "ollama":
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    err_type, code = _OPENAI_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


_STATUSES = {s.value for s in http.HTTPStatus}


def stream_error_event(flavour: Flavour, message: str) -> dict[str, Any]:
    """The in-band SSE event this flavour sends when generation fails after the stream started."""
    if flavour.name == "tgi":
        return {"error": message, "error_type": "generation"}
    if flavour.name == "vllm":
        return {"error": error_body(flavour, 500, message)}
    return error_body(flavour, 500, message)


def error_response(flavour: Flavour, status: int, message: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": _fmt_seconds(retry_after)} if retry_after is not None else None
    return web.json_response(error_body(flavour, status, message), status=status, headers=headers)


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ---------------------------------------------------------------- engine-specific endpoints


def add_flavour_routes(app: web.Application, state: MockState) -> None:
    name = state.flavour.name
    if name == "llama-server":
        app.router.add_get("/slots", partial(_slots, state))
        app.router.add_get("/props", partial(_props, state))
        app.router.add_get("/metrics", partial(_metrics, state))
    elif name == "vllm":
        app.router.add_get("/metrics", partial(_metrics, state))
        app.router.add_get("/version", partial(_json, {"version": "0.11.0"}))
    elif name == "sglang":
        app.router.add_get("/get_load", partial(_get_load, state))
        app.router.add_get("/metrics", partial(_metrics, state))
    elif name == "ollama":
        app.router.add_get("/api/version", partial(_json, {"version": "0.12.6"}))
        app.router.add_get("/", partial(_text, "Ollama is running"))
    elif name == "tgi":
        app.router.add_get("/info", partial(_info, state))


async def _json(obj: Any, request: web.Request) -> web.Response:
    return web.json_response(obj)


async def _text(text: str, request: web.Request) -> web.Response:
    return web.Response(text=text)


async def _slots(state: MockState, request: web.Request) -> web.Response:
    busy = state.busy_slots()
    return web.json_response(
        [{"id": i, "id_task": -1, "n_ctx": 4096, "is_processing": b, "params": {}} for i, b in enumerate(busy)]
    )


async def _props(state: MockState, request: web.Request) -> web.Response:
    return web.json_response(
        {
            "default_generation_settings": {"n_ctx": 4096, "params": {"n_predict": -1}},
            "total_slots": len(state.busy_slots()),
            "model_path": f"/models/{state.model}.gguf",
            "chat_template": "{{ messages }}",
            "build_info": "b0000-mockai",
        }
    )


async def _get_load(state: MockState, request: web.Request) -> web.Response:
    s = state.stats
    return web.json_response([{"dp_rank": 0, "num_reqs": s.running + s.waiting, "num_waiting_reqs": s.waiting, "num_tokens": 0}])


async def _info(state: MockState, request: web.Request) -> web.Response:
    return web.json_response(
        {
            "model_id": state.model,
            "model_sha": None,
            "model_dtype": "torch.float16",
            "model_device_type": "cpu",
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": state.max_inflight or 128,
            "max_best_of": 2,
            "max_stop_sequences": 4,
            "max_input_tokens": 4095,
            "max_total_tokens": 4096,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": "3.3.6",
            "sha": None,
            "docker_label": None,
        }
    )


async def _metrics(state: MockState, request: web.Request) -> web.Response:
    s, name, model = state.stats, state.flavour.name, json.dumps(state.model)
    if name == "vllm":
        gauges = [("vllm:num_requests_running", s.running), ("vllm:num_requests_waiting", s.waiting)]
        label = f"{{model_name={model}}}"
    elif name == "sglang":
        gauges = [("sglang:num_running_reqs", s.running), ("sglang:num_queue_reqs", s.waiting)]
        label = f"{{model_name={model}}}"
    else:
        gauges = [("llamacpp:requests_processing", s.running), ("llamacpp:requests_deferred", s.waiting)]
        label = ""
    lines = []
    for metric, value in gauges:
        lines += [f"# HELP {metric} mockai gauge", f"# TYPE {metric} gauge", f"{metric}{label} {float(value)}"]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")
