"""The one error tree. Every failure a client can see is one of these.

Each exception carries the HTTP status and OpenAI's ``type`` / ``code`` / ``param``;
``protocol.errors`` renders them as ``{"error": {...}}``. Nothing else in the code
base builds an error body by hand.
"""

from __future__ import annotations


class FaceplateError(Exception):
    """Base of every client-visible error."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(FaceplateError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, limit: int, requested: int = 0, param: str = "messages") -> None:
        total = prompt_tokens + requested
        detail = (
            f"({prompt_tokens} in the prompt; {requested} for the completion)"
            if requested
            else f"({prompt_tokens} in the prompt)"
        )
        super().__init__(
            f"This model's maximum context length is {limit} tokens. However, you requested {total} tokens {detail}. "
            "Please reduce the length of the messages or completion.",
            param=param,
        )
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class InvalidApiKey(FaceplateError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(FaceplateError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(FaceplateError):
    status = 404
    type = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str, param: str | None = "model") -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.",
            param=param,
        )
        self.model = model


class MethodNotAllowed(FaceplateError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(FaceplateError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(FaceplateError):
    """429 for a per-key limit. ``limit_type`` is ``requests`` or ``tokens`` as OpenAI sends it."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit_type: str, retry_after_s: float, headers: dict[str, str] | None = None) -> None:
        retry = max(1, int(retry_after_s + 0.999))
        merged = {"retry-after": str(retry), "retry-after-ms": str(max(1, int(retry_after_s * 1000)))}
        merged.update(headers or {})
        super().__init__(message, headers=merged)
        self.type = limit_type


class Overloaded(FaceplateError):
    """503: the model's queue is full. Retryable; the SDK honours retry-after."""

    status = 503
    type = "server_error"
    code = "server_overloaded"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message, headers={"retry-after": str(max(1, int(retry_after_s + 0.999)))})


class EngineFailure(FaceplateError):
    """The engine failed on a request that was valid: a server error, never bad input."""

    status = 500
    type = "server_error"
    code = "engine_error"


class UpstreamFailed(FaceplateError):
    """502: the remote engine serving the model failed (refused, reset, timed out or broke its stream)."""

    status = 502
    type = "server_error"
    code = "upstream_error"


class ServiceUnavailable(FaceplateError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class ShuttingDown(ServiceUnavailable):
    """503 while the server drains: another replica (or this one, restarted) will answer a retry."""

    code = "server_shutting_down"

    def __init__(self, message: str = "The server is shutting down. Please retry shortly.", retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after_s)})


class RequestTimeout(FaceplateError):
    """504: the request ran past the server's deadline (``request_timeout_s``) and was stopped."""

    status = 504
    type = "server_error"
    code = "request_timeout"


class HeadersTooLarge(FaceplateError):
    status = 431
    type = "invalid_request_error"
    code = "request_header_fields_too_large"


class ClientTooSlow(FaceplateError):
    """408: the client sent a request's headers or body too slowly (``header_timeout_s`` /
    ``body_timeout_s``); the connection is closed after the answer."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"connection": "close"})
