"""One Batch API line run through the service layer, as its owner, in the engines' batch queue.

``run_request`` parses the line's body as its endpoint's wire request and calls the same service
function as the HTTP route, with ``BatchServices``: usage metered as ``batch <endpoint>`` (apart
from the key's interactive usage), and ``priority="batch"``, so engines admit interactive work
first. The answer is the endpoint's JSON body; a refusal is the FaceplateError the route would give.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from faceplate.access.auth import Principal
from faceplate.engines.base import Priority
from faceplate.errors import InvalidRequest
from faceplate.protocol.chat import ChatCompletionRequest
from faceplate.protocol.common import parse_request
from faceplate.protocol.completions import CompletionRequest
from faceplate.protocol.embeddings import EmbeddingRequest
from faceplate.protocol.responses import CreateResponseRequest
from faceplate.service import embeddings as embedding_service
from faceplate.service import generate
from faceplate.service import responses as response_service
from faceplate.service.metering import Meter
from faceplate.service.services import Services

BATCH_PREFIX = "batch "


@dataclasses.dataclass
class BatchServices(Services):
    """The services as batch lines see them: usage metered as ``batch <endpoint>``, and the engines'
    batch queue, which yields to interactive requests."""

    priority: Priority = "batch"

    def meter(self, principal: Principal, endpoint: str, model: str) -> Meter:
        return super().meter(principal, BATCH_PREFIX + endpoint, model)


def batch_services(services: Services) -> BatchServices:
    shared = {f.name: getattr(services, f.name) for f in dataclasses.fields(services) if f.name != "priority"}
    return BatchServices(**shared)


def usage_of(endpoint: str, body: dict[str, Any]) -> tuple[int, int, int]:
    """(input, cached, output) tokens of one endpoint answer."""
    usage = body.get("usage") or {}
    if endpoint == "/v1/responses":
        details = usage.get("input_tokens_details") or {}
        return int(usage.get("input_tokens") or 0), int(details.get("cached_tokens") or 0), int(usage.get("output_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    return (
        int(usage.get("prompt_tokens") or 0),
        int(details.get("cached_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
    )


def _no_stream(data: dict[str, Any]) -> None:
    if data.get("stream") is True:
        raise InvalidRequest("Streaming is not supported in the Batch API: 'stream' must not be true.", param="stream")


async def run_request(services: Services, principal: Principal, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
    """One batch line's body run on its endpoint: the endpoint's JSON answer, or a FaceplateError."""
    _no_stream(data)
    raw = json.dumps(data).encode()
    name = endpoint.removeprefix("/v1/")
    if endpoint == "/v1/chat/completions":
        reply = await generate.chat(services, principal, parse_request(raw, ChatCompletionRequest, endpoint=name))
        return await reply.collect()
    if endpoint == "/v1/completions":
        reply = await generate.completion(services, principal, parse_request(raw, CompletionRequest, endpoint=name))
        return await reply.collect()
    if endpoint == "/v1/embeddings":
        obj, _ = await embedding_service.embed(services, principal, parse_request(raw, EmbeddingRequest, endpoint=name))
        return obj
    if endpoint == "/v1/responses":
        body = parse_request(raw, CreateResponseRequest, endpoint=name)
        if body.background:
            raise InvalidRequest("'background' is not supported in the Batch API.", param="background")
        run = await response_service.create(services, principal, body)
        return await run.wait()
    raise InvalidRequest(f"The endpoint {endpoint!r} is not supported for batches.", param="url")
