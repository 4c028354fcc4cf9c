"""The Files API routes.

POST   /v1/files                  multipart: file, purpose, expires_after[anchor], expires_after[seconds]
GET    /v1/files                  ``limit`` (1..10,000, default 10,000), ``order`` (default desc), ``after``, ``purpose``
GET    /v1/files/{id}             the File object
GET    /v1/files/{id}/content     the exact bytes, application/octet-stream, streamed from disk
DELETE /v1/files/{id}             -> {id, object: "file", deleted: true}
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from faceplate.errors import PayloadTooLarge
from faceplate.http.gate import principal_of
from faceplate.http.respond import strict_compat
from faceplate.http.sse import json_response
from faceplate.protocol.files import FORM_OVERHEAD_BYTES, list_query, multipart_boundary, multipart_events
from faceplate.service import files
from faceplate.service.services import Services


def routes(svc: Services) -> list[Route]:
    settings = svc.settings

    async def upload(request: Request) -> Response:
        strict = strict_compat(request, settings.compat)
        boundary = multipart_boundary(request.headers.get("content-type"))
        declared = request.headers.get("content-length")
        limit = settings.max_file_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD_BYTES:
            # Refused before reading a byte; the server discards the rest of the body unread.
            raise PayloadTooLarge(f"File is too large: the maximum size is {limit} bytes.", param="file")
        try:
            obj = await files.upload(svc, principal_of(request), multipart_events(boundary, request.stream()), strict=strict)
        except ClientDisconnect:
            return Response(status_code=499)  # the client left mid-upload: nothing was kept
        return json_response(obj)

    async def list_files(request: Request) -> Response:
        return json_response(await files.list_files(svc, principal_of(request), list_query(request.query_params)))

    async def retrieve(request: Request) -> Response:
        return json_response(await files.retrieve(svc, principal_of(request), request.path_params["file_id"]))

    async def content(request: Request) -> Response:
        found, chunks = await files.content(svc, principal_of(request), request.path_params["file_id"])
        return StreamingResponse(chunks, media_type="application/octet-stream", headers={"content-length": str(found.bytes)})

    async def delete(request: Request) -> Response:
        return json_response(await files.delete(svc, principal_of(request), request.path_params["file_id"]))

    return [
        Route("/v1/files", upload, methods=["POST"]),
        Route("/v1/files", list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", retrieve, methods=["GET"]),
        Route("/v1/files/{file_id}", delete, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", content, methods=["GET"]),
    ]
