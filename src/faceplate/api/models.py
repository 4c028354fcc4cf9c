"""GET /v1/models and /v1/models/{id}: OpenAI Model objects, filtered by what the key may use.

Aliases are listed beside the models they name. ``/v1/models/{id}`` also carries
``capabilities`` (an extra field the SDKs ignore): what the model supports, so a client
can ask instead of guessing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faceplate.http.gate import principal_of
from faceplate.http.sse import json_response
from faceplate.service.services import Services


def model_object(svc: Services, model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": svc.registry.created[model_id], "owned_by": "faceplate"}


def routes(svc: Services) -> list[Route]:
    async def list_models(request: Request) -> Response:
        principal = principal_of(request)
        data = [model_object(svc, m) for m in svc.registry.ids() if principal.can_see(m, svc.registry.resolve(m))]
        return json_response({"object": "list", "data": data})

    async def get_model(request: Request) -> Response:
        principal = principal_of(request)
        model_id = request.path_params["model"]
        principal.check_model(model_id, svc.registry.resolve(model_id))
        capabilities = svc.registry.capabilities(model_id)  # 404 for an unknown model
        return json_response({**model_object(svc, model_id), "capabilities": capabilities})

    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
    ]
