"""The ``faceplate`` command: serve, and the admin subcommands."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from collections.abc import Sequence
from typing import Any

from faceplate import __version__, cli_keys, logs
from faceplate.check import command as check_command
from faceplate.config import ConfigError, ModelSpec, Settings, load_settings, parse_aliases, scrub, upstream_from_cli, url_secrets

log = logging.getLogger("faceplate")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML settings file (also FACEPLATE_CONFIG)")
    p.add_argument("--database-url", help="SQLAlchemy URL of the store (default: SQLite in the data dir; FACEPLATE_DATABASE_URL)")
    p.add_argument("--data-dir", help="folder for the SQLite store (FACEPLATE_DATA_DIR)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceplate",
        description="Serve your own models behind exactly OpenAI's HTTP API. "
        "Every option is also a FACEPLATE_<NAME> environment variable or a key in the --config TOML file; "
        "flags win over the environment, which wins over the file.",
    )
    parser.add_argument("--version", action="version", version=f"faceplate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the configured models (default: the bundled ones) over HTTP")
    _add_common(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; FACEPLATE_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000; FACEPLATE_PORT)")
    serve.add_argument(
        "--model",
        action="append",
        metavar="[ID=]PATH",
        help="a model to serve: a GGUF file or a sentence-transformers folder, optionally named ID=PATH; repeatable "
        "(default: the bundled smollm2-135m-instruct and all-minilm-l6-v2; FACEPLATE_MODELS, comma-separated)",
    )
    serve.add_argument(
        "--upstream",
        action="append",
        metavar="ID=[KIND+]URL",
        help="serve model ID from a remote OpenAI-compatible server (vLLM, SGLang, TGI, llama-server, Ollama, another "
        "Faceplate); the same ID twice forms a pool; KIND is probed when left out; repeatable (FACEPLATE_UPSTREAMS). "
        "With upstreams, the bundled models are not loaded unless --model names them",
    )
    serve.add_argument(
        "--alias",
        action="append",
        metavar="ALIAS=MODEL",
        help="another name for a served model, e.g. gpt-4o-mini=smollm2-135m-instruct; repeatable (FACEPLATE_ALIASES)",
    )
    serve.add_argument(
        "--api-key", action="append", metavar="KEY", help="accept this Bearer key; repeatable (FACEPLATE_API_KEYS)"
    )
    serve.add_argument("--admin-key", help="key for the /admin API (FACEPLATE_ADMIN_KEY)")
    serve.add_argument("--redis-url", help="Redis URL: share rate-limit state between replicas (FACEPLATE_REDIS_URL)")
    serve.add_argument(
        "--allow-insecure",
        action="store_true",
        default=None,
        help="allow binding a non-loopback address with no API key configured",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="with no API key, also answer requests whose Host is NAME (loopback names always; * for any); repeatable "
        "(FACEPLATE_ALLOWED_HOSTS)",
    )
    serve.add_argument(
        "--compat",
        choices=["lenient", "strict"],
        help="lenient (default): accept and log unknown fields, honour top_k/min_p/repetition_penalty; strict: answer "
        "exactly as OpenAI does, its refusals included (per request: header x-faceplate-compat; FACEPLATE_COMPAT)",
    )
    serve.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="batch-invariant decoding: seeded output is the same alone or batched (slower; FACEPLATE_DETERMINISTIC)",
    )
    serve.add_argument(
        "--prompt-cache-mib",
        type=int,
        help="host memory per chat model for prompts whose slot went to another request (default 2048; 0: off; "
        "FACEPLATE_PROMPT_CACHE_MIB)",
    )
    serve.add_argument(
        "--responses-ignore-unsupported-tools",
        action="store_true",
        default=None,
        help="Responses API: drop hosted tools (web_search, file_search, ...) this server cannot run instead of "
        "answering 400, as Codex needs (FACEPLATE_RESPONSES_IGNORE_UNSUPPORTED_TOOLS)",
    )
    serve.add_argument(
        "--responses-retention-days",
        type=float,
        help="delete stored responses older than this many days (default 30; 0 keeps them; FACEPLATE_RESPONSES_RETENTION_DAYS)",
    )
    serve.add_argument("--threads", type=int, help="CPU threads per model (default: all cores; FACEPLATE_THREADS)")
    serve.add_argument("--n-parallel", type=int, help="sequences decoded together per chat model (default 8)")
    serve.add_argument("--max-queue", type=int, help="requests that may wait per model before a 503 (default 4 x n-parallel)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level (default info)")
    serve.add_argument("--log-format", choices=["text", "json"], help="text lines or one JSON object a line (default text)")
    cli_keys.add_parsers(sub, _add_common)
    check_command.add_parser(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "models": [ModelSpec.parse_cli(m).model_dump(exclude_none=True) for m in args.model or []],
        "api_keys": args.api_key or [],
        "upstreams": [upstream_from_cli(u) for u in args.upstream or []],
        "aliases": parse_aliases(args.alias or []),
        "admin_key": args.admin_key,
        "redis_url": args.redis_url,
        "allow_insecure": args.allow_insecure,
        "allowed_hosts": args.allowed_host or [],
        "deterministic": args.deterministic,
        "prompt_cache_mib": args.prompt_cache_mib,
        "compat": args.compat,
        "responses_ignore_unsupported_tools": args.responses_ignore_unsupported_tools,
        "responses_retention_days": args.responses_retention_days,
        "threads": args.threads,
        "n_parallel": args.n_parallel,
        "max_queue": args.max_queue,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "database_url": args.database_url,
        "data_dir": args.data_dir,
    }
    settings = load_settings(args.config, overrides=overrides)
    logs.configure(settings.log_level, settings.log_format)
    if not settings.effective_models() and not settings.upstreams:
        print("faceplate: no models configured and the bundled models are not installed", file=sys.stderr)
        return 2
    insecure = not settings.api_keys and not _is_loopback(settings.host) and not settings.allow_insecure
    if insecure and not _store_has_keys(settings):
        print(
            f"faceplate: refusing to serve {settings.host} with no API key: anyone on the network could use it. "
            "Pass --api-key, or --allow-insecure if that is really intended.",
            file=sys.stderr,
        )
        return 2
    from faceplate.server import run

    return run(settings)


def _store_has_keys(settings: Settings) -> bool:
    """Keys made with `faceplate keys create` protect the server as --api-key does."""
    from faceplate.store import Store

    url = settings.resolved_database_url()
    try:
        store = Store.open(url)
    except Exception as exc:  # the driver's message may quote the URL: never print its password
        print(f"faceplate: cannot open the key store: {scrub(str(exc), url_secrets(url))}", file=sys.stderr)
        return False
    try:
        return store.keys.any()
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command in ("keys", "usage"):
            return cli_keys.run(args)
        if args.command == "check":
            return check_command.run(args)
    except ConfigError as exc:
        print(f"faceplate: {exc}", file=sys.stderr)
        return 2
    return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()

__all__ = ["main", "build_parser", "Settings", "asyncio"]
