"""Rendering of a bench/routing_gain.py run: one row per upstream set and policy, the markdown table, the chart."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile  # noqa: E402

POLICIES = ["round_robin", "least_loaded", "affinity"]
SETS = {"faceplate": "2 × Faceplate (SmolLM2-135M, 1 thread each)", "mockai": "2 × mockai (prefill model)"}


def _history_hit(samples: list[dict[str, Any]]) -> tuple[int, int]:
    """(follow-up turns that found their whole previous turn cached, follow-up turns): the session stayed put."""
    prev = {(s["round"], s["session"], s["turn"]): s for s in samples if not s["error"]}
    hits = total = 0
    for s in samples:
        before = prev.get((s["round"], s["session"], s["turn"] - 1))
        if s["error"] or before is None:
            continue
        total += 1
        hits += s["cached_tokens"] >= before["prompt_tokens"] - 1  # all of it (a token of slack for the template)
    return hits, total


def summarize(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rounds (``set``, ``policy``, ``samples``, ``wall_s``, ``split``, ``upstream``, ``other_cpu``) → rows."""
    rows = []
    for set_name in SETS:
        for policy in POLICIES:
            rs = [r for r in rounds if r["set"] == set_name and r["policy"] == policy]
            if not rs:
                continue
            samples = [s for r in rs for s in r["samples"]]
            ok = [s for s in samples if not s["error"]]
            ttft = [s["ttft_s"] for s in ok if s["ttft_s"] is not None]
            follow = [s["ttft_s"] for s in ok if s["ttft_s"] is not None and s["turn"] > 1]
            prompt = sum(s["prompt_tokens"] for s in ok)
            recomputed = sum(s["prompt_tokens"] - s["cached_tokens"] for s in ok)
            hits, total = _history_hit(samples)
            up = [r["upstream"] for r in rs if r.get("upstream")]
            rows.append(
                {
                    "set": set_name,
                    "policy": policy,
                    "rounds": len(rs),
                    "requests": len(samples),
                    "errors": len(samples) - len(ok),
                    "ttft_p50": percentile(ttft, 50),
                    "ttft_p95": percentile(ttft, 95),
                    "follow_p50": percentile(follow, 50),
                    "follow_p95": percentile(follow, 95),
                    "wall_s": statistics.median(r["wall_s"] for r in rs),
                    "tok_s": sum(s["completion_tokens"] for s in ok) / sum(r["wall_s"] for r in rs),
                    "prompt_tokens": prompt / len(rs),
                    "recomputed": recomputed / len(rs),
                    "recomputed_follow": sum(s["prompt_tokens"] - s["cached_tokens"] for s in ok if s["turn"] > 1) / len(rs),
                    "history_hits": f"{hits}/{total}",
                    "split": " · ".join("/".join(str(x) for x in r["split"]) for r in rs),
                    "upstream_evaluated": (
                        sum(u["prompt_tokens"] - u["prompt_tokens_reused"] for u in up) / len(up) if up else None
                    ),
                    "other_cpu": statistics.fmean(r["other_cpu"] for r in rs),
                }
            )
    return rows


def _s(v: float | None, unit: str = "s") -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f}ms" if unit == "ms" or v < 1 else f"{v:.2f}s"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| upstreams | policy | rounds | requests (errors) | TTFT p50 | TTFT p95 | turns 2+ p50 | turns 2+ p95 | wall | "
        "output tok/s | prompt tok | recomputed | of which turns 2+ | upstreams evaluated | whole history cached | "
        "split per round | other CPU |"
    )
    lines = [head, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|"]
    for r in rows:
        base = next((b for b in rows if b["set"] == r["set"] and b["policy"] == "round_robin"), None)
        rec = f"{r['recomputed']:.0f}"
        if base and r is not base and base["recomputed"]:
            rec += f" ({r['recomputed'] / base['recomputed']:.2f}×)"
        ev = "-" if r["upstream_evaluated"] is None else f"{r['upstream_evaluated']:.0f}"
        cells = [
            SETS[r["set"]].split(" (")[0],
            r["policy"],
            str(r["rounds"]),
            f"{r['requests']} ({r['errors']})",
            _s(r["ttft_p50"]),
            _s(r["ttft_p95"]),
            _s(r["follow_p50"]),
            _s(r["follow_p95"]),
            _s(r["wall_s"]),
            f"{r['tok_s']:.1f}",
            f"{r['prompt_tokens']:.0f}",
            rec,
            f"{r['recomputed_follow']:.0f}",
            ev,
            r["history_hits"],
            r["split"],
            f"{r['other_cpu']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in SETS if any(r["set"] == s for r in rows)]
    fig, axes = plt.subplots(len(sets), 3, figsize=(13, 3.6 * len(sets)), squeeze=False)
    colors = {"round_robin": "#999999", "least_loaded": "#6a9fd4", "affinity": "#d9812b"}
    for i, set_name in enumerate(sets):
        rs = [r for r in rows if r["set"] == set_name]
        names = [r["policy"] for r in rs]
        xs = range(len(rs))
        ax = axes[i][0]
        ax.bar(xs, [r["recomputed"] for r in rs], color=[colors[n] for n in names])
        ax.set_title(f"{SETS[set_name]}\nprompt tokens recomputed per round", fontsize=9)
        ax.set_xticks(list(xs), names, fontsize=8)
        ax = axes[i][1]
        w = 0.2
        for j, (key, label) in enumerate(
            [("ttft_p50", "p50"), ("ttft_p95", "p95"), ("follow_p50", "turns 2+ p50"), ("follow_p95", "turns 2+ p95")]
        ):
            ax.bar([x + (j - 1.5) * w for x in xs], [r[key] or 0 for r in rs], w, label=label, alpha=0.4 + 0.15 * j)
        ax.set_title("time to first token (s)", fontsize=9)
        ax.set_xticks(list(xs), names, fontsize=8)
        ax.legend(fontsize=7)
        ax = axes[i][2]
        ax.bar(xs, [r["wall_s"] for r in rs], color=[colors[n] for n in names])
        ax.set_title("wall time per round (s, median)", fontsize=9)
        ax.set_xticks(list(xs), names, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
