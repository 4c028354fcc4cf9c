"""The results as a plain table or as JSON, and the exit status they mean."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keeps `faceplate --help` from importing aiohttp and jsonschema
    from faceplate.check.runner import Result

EXIT_OK = 0  # nothing failed (skips are fine)
EXIT_FAILED = 1  # at least one check failed
EXIT_UNREACHABLE = 2  # no HTTP answer at all (also: bad usage)
LABEL = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}


def counts(results: Sequence[Result]) -> dict[str, int]:
    return {status: sum(r.status == status for r in results) for status in ("pass", "fail", "skip")}


def summary(results: Sequence[Result]) -> str:
    c = counts(results)
    return f"{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped"


def exit_status(results: Sequence[Result]) -> int:
    return EXIT_FAILED if counts(results)["fail"] else EXIT_OK


def table(results: Sequence[Result], *, target: str = "") -> str:
    """One row per check, then each failure's rule and evidence, then the summary line."""
    width = max([len(r.name) for r in results] + [5])
    lines = [f"faceplate check {target}".rstrip(), ""] if target else []
    lines.append(f"{'CHECK':<{width}}  RESULT  REASON")
    lines += [f"{r.name:<{width}}  {LABEL[r.status]:<6}  {r.reason}" for r in results]
    failed = [r for r in results if r.status == "fail"]
    if failed:
        lines += ["", "Failures:"]
        for r in failed:
            lines.append(f"  {r.name}: {r.rule}")
            lines.append(f"    {r.reason}")
            if r.evidence:
                lines.append(f"    {r.evidence}")
    lines += ["", summary(results)]
    return "\n".join(lines)


def as_json(results: Sequence[Result], *, target: str = "") -> str:
    doc: dict[str, Any] = {
        "target": target,
        "summary": counts(results),
        "ok": not counts(results)["fail"],
        "results": [r.as_dict() for r in results],
    }
    return json.dumps(doc, indent=2)


def unreachable_json(target: str, message: str) -> str:
    return json.dumps({"target": target, "ok": False, "unreachable": message, "results": []}, indent=2)
