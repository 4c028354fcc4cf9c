"""Remote engines in the settings: each ``UpstreamSpec`` is one server; specs sharing an id form a pool.

On the command line an upstream is ``ID=URL`` (the kind found by probing) or ``ID=KIND+URL``
(``llama=llama-server+http://10.0.0.5:8080``); the TOML file's ``[[upstreams]]`` tables take
every field. The id is the model name clients use; ``model`` is the upstream's own name for it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

UpstreamKind = Literal["auto", "openai", "vllm", "sglang", "llama-server", "tgi", "ollama", "faceplate", "router"]
KINDS: tuple[str, ...] = UpstreamKind.__args__  # type: ignore[attr-defined]


class UpstreamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    id: str = Field(min_length=1, description="the model name clients use; specs with the same id form one pool")
    url: str = Field(description="base URL of the OpenAI-compatible server (with or without /v1)")
    kind: UpstreamKind = Field("auto", description="which server it is (auto: probed at start-up)")
    api_key: str | None = Field(None, repr=False, description="Bearer key Faceplate sends upstream")
    model: str | None = Field(None, description="the upstream's name for the model (default: the first it lists)")
    serves: Literal["chat", "embedding"] | None = Field(None, description="what the model does (default: probed)")
    weight: float = Field(1.0, gt=0, description="share of placements relative to the pool's other members")
    max_inflight: int = Field(64, ge=1, description="requests in flight to it at once (its slots); more wait in a queue")
    connect_timeout_s: float = Field(2.0, gt=0)
    first_byte_timeout_s: float = Field(60.0, gt=0, description="response headers and first event (prefill included)")
    idle_timeout_s: float = Field(60.0, gt=0, description="most silence between two events of a stream")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("an upstream URL starts with http:// or https://")
        url = url.rstrip("/")
        return url.removesuffix("/v1")

    @classmethod
    def parse_cli(cls, text: str) -> UpstreamSpec:
        ident, sep, rest = text.partition("=")
        if not sep or not ident.strip() or not rest.strip():
            raise ValueError(f"an upstream is ID=URL or ID=KIND+URL, not {text!r}")
        kind, plus, url = rest.strip().partition("+")  # "id = vllm+http://..." as "id = http://..." is
        if plus and kind in KINDS:
            return cls(id=ident.strip(), url=url.strip(), kind=kind)  # type: ignore[arg-type]
        return cls(id=ident.strip(), url=rest.strip())


class RoutingSettings(BaseModel):
    """How a pool places requests and treats failing members (the same on every replica)."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["affinity", "least_loaded", "round_robin"] = Field(
        "affinity",
        description="affinity: the upstream holding the conversation's prefix unless it is clearly busier; "
        "least_loaded: the one with the fewest requests; round_robin: each in turn",
    )
    retries: int = Field(2, ge=0, le=5, description="attempts on other upstreams before the first byte reaches the client")
    retry_budget: float = Field(
        0.2, ge=0, le=1, description="retries at most this share of a pool's requests (over 10 s; 3 always allowed)"
    )
    queue_timeout_s: float = Field(30.0, gt=0, description="how long a request waits for a free upstream slot before 503")
    health_interval_s: float = Field(
        5.0, gt=0, description="active health check period per upstream (jittered; checked once a second at most)"
    )
    load_stale_s: float = Field(5.0, gt=0, description="an upstream's reported load older than this is ignored")
    affinity_abs: int = Field(4, ge=0, description="leave the affine upstream only if it has this many more requests ...")
    affinity_rel: float = Field(1.5, ge=1, description="... and this many times the least loaded one's")
    breaker_failures: int = Field(5, ge=1, description="consecutive failures that open an upstream's circuit")
    breaker_open_s: float = Field(30.0, gt=0, description="how long an open circuit waits before one probe request")
