"""``faceplate keys create|list|revoke`` and ``faceplate usage``: the store, from the command line.

They open the same store as ``faceplate serve`` (``--database-url``, ``--data-dir``,
``--config``, or the FACEPLATE_* variables) and work while servers run: a new key is
accepted at once, a revoked key is refused by running servers within ``key_cache_ttl_s``
(5 s by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from faceplate.config import load_settings

if TYPE_CHECKING:
    from faceplate.store import Store

GROUPS = ("key", "model", "day")  # faceplate.store.usage.GROUPS; the store (SQLAlchemy) is imported only when used


def add_parsers(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)

    create = ksub.add_parser("create", help="create a key; its secret is printed once")
    add_common(create)
    create.add_argument("--name", required=True, help="a label for the key (who or what uses it)")
    create.add_argument("--models", help="comma-separated model ids the key may use (default: every model)")
    create.add_argument("--rpm", type=int, help="requests per minute (default: unlimited)")
    create.add_argument("--tpm", type=int, help="tokens per minute, prompt + completion (default: unlimited)")
    create.add_argument(
        "--batch-token-limit",
        type=int,
        help="most prompt tokens queued in unfinished batches (default: the server's batch_token_limit setting)",
    )
    when = create.add_mutually_exclusive_group()
    when.add_argument("--expires-in", metavar="DURATION", help="lifetime, e.g. 30d, 12h, 90m (default: never expires)")
    when.add_argument("--expires-at", metavar="TIME", help="expiry as ISO 8601, e.g. 2026-12-31T23:59:00Z (UTC if no offset)")
    create.add_argument("--json", action="store_true", help="print the key (secret included) as JSON")

    lst = ksub.add_parser("list", help="list keys (never their secrets)")
    add_common(lst)
    lst.add_argument("--active", action="store_true", help="only keys that are neither revoked nor expired")
    lst.add_argument("--json", action="store_true", help="print JSON")

    revoke = ksub.add_parser("revoke", help="revoke a key (running servers refuse it within a few seconds)")
    add_common(revoke)
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (key_...), as `keys list` shows")
    revoke.add_argument("--json", action="store_true", help="print the revoked key as JSON")

    usage = sub.add_parser("usage", help="requests and tokens, totalled by key, model or day")
    add_common(usage)
    usage.add_argument("--by", choices=GROUPS, default="key", help="how to group (default: key)")
    usage.add_argument("--since", metavar="DATE", help="from this ISO date or time (UTC)")
    usage.add_argument("--until", metavar="DATE", help="before this ISO date or time (UTC)")
    usage.add_argument("--json", action="store_true", help="print JSON")


def _open(args: argparse.Namespace) -> Store:
    from faceplate.store import Store

    settings = load_settings(args.config, overrides={"database_url": args.database_url, "data_dir": args.data_dir})
    return Store.open(settings.resolved_database_url())


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _day(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "usage":
            return _usage(args)
        return {"create": _create, "list": _list, "revoke": _revoke}[args.keys_command](args)
    except ValueError as exc:
        print(f"faceplate: {exc}", file=sys.stderr)
        return 2


def _create(args: argparse.Namespace) -> int:
    from faceplate.store.keys import iso, parse_duration, parse_time

    expires_at = None
    if args.expires_in:
        expires_at = time.time() + parse_duration(args.expires_in)
    elif args.expires_at:
        expires_at = parse_time(args.expires_at)
        if expires_at <= time.time():
            raise ValueError(f"--expires-at {args.expires_at} is in the past")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models is not None else None
    store = _open(args)
    try:
        key, secret = store.keys.create(
            args.name,
            models=models,
            rpm=args.rpm,
            tpm=args.tpm,
            expires_at=expires_at,
            batch_token_limit=args.batch_token_limit,
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps({**key.to_json(), "key": secret}, indent=2))
        return 0
    limits = f"rpm {key.rpm or 'unlimited'}, tpm {key.tpm or 'unlimited'}"
    if key.batch_token_limit is not None:
        limits += f", batch tokens {key.batch_token_limit}"
    models_txt = ", ".join(key.models) if key.models is not None else "all models"
    print(f"Created {key.id} ({key.name}): {models_txt}; {limits}; expires {iso(key.expires_at) or 'never'}.", file=sys.stderr)
    print("The secret below is shown only this once; store it now.", file=sys.stderr)
    print(secret)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        keys = store.keys.list(include_inactive=not args.active)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"object": "list", "data": [k.to_json() for k in keys]}, indent=2))
        return 0
    rows = [
        (
            k.id,
            k.name,
            k.prefix + "...",
            ",".join(k.models) if k.models is not None else "*",
            k.rpm,
            k.tpm,
            _day(k.created_at),
            _day(k.expires_at),
            k.status(),
        )
        for k in keys
    ]
    print(_table(["ID", "NAME", "KEY", "MODELS", "RPM", "TPM", "CREATED (UTC)", "EXPIRES (UTC)", "STATUS"], rows))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        key = store.keys.revoke(args.key_id)
    finally:
        store.close()
    if key is None:
        print(f"faceplate: no key with id {args.key_id!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(key.to_json(), indent=2))
    else:
        print(f"Revoked {key.id} ({key.name}). Running servers refuse it within their key cache time (5 s by default).")
    return 0


def _usage(args: argparse.Namespace) -> int:
    from faceplate.store.keys import parse_time

    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    store = _open(args)
    try:
        rows = store.usage.report(args.by, since=since, until=until)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"object": "list", "by": args.by, "data": rows}, indent=2))
        return 0
    head = {"key": ["KEY", "NAME"], "model": ["MODEL"], "day": ["DAY (UTC)"]}[args.by]
    table = []
    for r in rows:
        lead = [r["key"] or "-", r["name"]] if args.by == "key" else [r[args.by]]
        table.append([*lead, r["requests"], r["errors"], r["prompt_tokens"], r["completion_tokens"], r["total_tokens"]])
    if rows:
        total = [sum(r[c] for r in rows) for c in ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens")]
        table.append(["TOTAL", *([""] * (len(head) - 1)), *total])
    print(_table([*head, "REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "TOTAL"], table))
    return 0
