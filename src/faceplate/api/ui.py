"""The web pages: a playground at ``/ui/`` and an operators' console at ``/ui/console``.

They are static files shipped in the package (``faceplate/ui``), with no build step and no CDN,
and they talk to the server only through the public API (``/v1``, ``/admin``, ``/health``) with
a key the user types in, so nothing secret is ever rendered into a page. They are public (the
gate lets ``/`` and ``/ui`` through without a key, the Host check still applies) and served with
a strict Content-Security-Policy: scripts, styles and connections to this origin only.
"""

from __future__ import annotations

from importlib import resources
from pathlib import PurePath

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from faceplate.errors import NotFound
from faceplate.service.services import Services

PAGES = {"": "index.html", "console": "console.html"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


def _assets() -> dict[str, bytes]:
    """Every file of the UI folder by name, read once: the only names ever served."""
    folder = resources.files("faceplate") / "ui"
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file() and PurePath(f.name).suffix in TYPES}


def routes(svc: Services) -> list[Route]:
    assets = _assets()

    def serve(name: str | None, request: Request) -> Response:
        if name is None or name not in assets:
            raise NotFound(f"Invalid URL ({request.method} {request.url.path})")
        return Response(assets[name], media_type=TYPES[PurePath(name).suffix], headers=HEADERS)

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    async def page(request: Request) -> Response:
        return serve(PAGES.get(request.path_params.get("page", "")), request)

    async def asset(request: Request) -> Response:
        return serve(request.path_params["name"], request)

    return [
        Route("/", root, methods=["GET"]),
        Route("/ui", root, methods=["GET"]),
        Route("/ui/", page, methods=["GET"]),
        Route("/ui/{page:str}", page, methods=["GET"]),
        Route("/ui/assets/{name:str}", asset, methods=["GET"]),
    ]
