"""`faceplate check URL`: the argparse wiring and the run."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from faceplate.check import report

EPILOG = (
    "Exit status: 0 when no check failed (skips allowed), 1 when a check failed, "
    "2 when the server could not be reached at all (or the arguments are wrong)."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check",
        help="test any OpenAI-compatible server against OpenAI's HTTP contract",
        description="Send a few small requests to an OpenAI-compatible server and report which parts of "
        "OpenAI's contract it keeps and which it breaks.",
        epilog=EPILOG,
    )
    p.add_argument("url", nargs="?", help="the server's base URL, with or without /v1 (e.g. http://127.0.0.1:8000)")
    p.add_argument("--key", metavar="K", help="Bearer API key (also enables the 401 checks)")
    p.add_argument("--model", metavar="M", help="chat model to test (default: the first listed model that answers chat)")
    p.add_argument(
        "--embedding-model",
        metavar="E",
        help="embedding model to test (default: the first other listed model that answers /v1/embeddings, else skip)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds allowed per request (default 60)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks (a name, or a group such as chat.stream)")
    p.add_argument("--list", action="store_true", help="list the checks and their rules, and exit")
    return p


def run(args: argparse.Namespace) -> int:
    from faceplate.check.checks import all_checks, run_suite
    from faceplate.check.http import TransportError, base_v1

    if args.list:
        for c in all_checks():
            print(f"{c.name:<28}  {c.rule}")
        return report.EXIT_OK
    if not args.url:
        print("faceplate check: a server URL is needed (e.g. faceplate check http://127.0.0.1:8000)", file=sys.stderr)
        return report.EXIT_UNREACHABLE
    try:
        target = base_v1(args.url)
        results = asyncio.run(
            run_suite(
                target,
                api_key=args.key,
                model=args.model,
                embedding_model=args.embedding_model,
                timeout=args.timeout,
                only=args.only,
            )
        )
    except ValueError as exc:
        print(f"faceplate check: {exc}", file=sys.stderr)
        return report.EXIT_UNREACHABLE
    except TransportError as exc:
        message = f"cannot reach {target} ({exc})"
        if args.json:
            print(report.unreachable_json(target, message))
        print(f"faceplate check: {message}", file=sys.stderr)
        return report.EXIT_UNREACHABLE
    print(report.as_json(results, target=target) if args.json else report.table(results, target=target))
    return report.exit_status(results)
