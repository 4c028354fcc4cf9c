"""The one place requests are authenticated, before any route runs.

Every path needs an API key except the explicit ``PUBLIC`` allow-list and the static pages
under ``/ui``; everything under ``/admin`` needs the admin key instead. A route added anywhere
is therefore protected without anyone remembering a line. The authenticated principal rides in the request's
scope (``principal_of``).

With authentication off, the ``Host`` header must name this machine (loopback names, the
bind address, or ``allowed_hosts``): a web page cannot drive a loopback server through DNS
rebinding.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from faceplate.access.auth import Authenticator, Principal, hash_key
from faceplate.errors import FaceplateError, InvalidApiKey, NotFound, PermissionDenied
from faceplate.http.sse import json_response

PUBLIC = frozenset({"/health", "/health/live", "/health/ready"})
ADMIN_PREFIX = "/admin"
PAGES_PREFIX = "/ui"  # static pages (api.ui): no key, they call the API with the one the user types


def principal_of(request: Request) -> Principal:
    """The caller the gate authenticated (raises if a route was wrongly left public)."""
    principal = request.scope.get("state", {}).get("principal")
    if principal is None:
        raise InvalidApiKey("You didn't provide an API key.")
    return principal  # type: ignore[no-any-return]


def _host_name(raw: str) -> str:
    host = raw.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AuthGate:
    def __init__(
        self,
        app: ASGIApp,
        auth: Authenticator,
        *,
        admin_key: str | None,
        admin_enabled: bool,
        bind_host: str,
        allowed_hosts: list[str],
        public_metrics: bool = False,
    ) -> None:
        self.app = app
        self.auth = auth
        self._public = PUBLIC | {"/metrics"} if public_metrics else PUBLIC
        self._admin_hash = hash_key(admin_key) if admin_key and admin_enabled else None
        self._hosts = {h.lower() for h in allowed_hosts} | {bind_host.lower()}

    def _check_host(self, request: Request) -> None:
        if self.auth.enabled or "*" in self._hosts:
            return
        host = _host_name(request.headers.get("host", ""))
        # No Host at all is an HTTP/1.0 client on this machine: browsers always send one.
        if host and not (_is_loopback(host) or host in self._hosts):
            raise PermissionDenied(
                f"Host {host!r} is not allowed: this server has no API key, so it only answers requests addressed "
                "to this machine. Set an API key, or add the name to allowed_hosts.",
                code="host_not_allowed",
            )

    def _check_admin(self, request: Request) -> None:
        if self._admin_hash is None:
            raise NotFound(f"Invalid URL ({request.method} {request.url.path})")
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(hash_key(secret.strip()), self._admin_hash):
            raise InvalidApiKey("The admin API needs the admin key (Authorization: Bearer ADMIN_KEY).")

    async def _principal(self, request: Request, path: str) -> Principal | None:
        if path in self._public:
            if "authorization" not in request.headers and self.auth.enabled:
                return None
            try:  # a public route shows more to a caller with a valid key
                return await self.auth.authenticate(request.headers)
            except FaceplateError:
                return None
        if path == "/" or path == PAGES_PREFIX or path.startswith(PAGES_PREFIX + "/"):
            self._check_host(request)
            return None
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            self._check_admin(request)
            return None
        principal = await self.auth.authenticate(request.headers)
        self._check_host(request)  # after authenticate: a stored key may have just turned auth on
        return principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await self._principal(request, scope["path"])
        except FaceplateError as exc:
            await json_response(exc.body(), status=exc.status, headers=exc.headers)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
