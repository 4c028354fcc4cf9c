"""Rendering of a bench/responses_chain.py run: the medians per turn, the markdown table and the chart."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from responses_chain_conversation import Sample  # noqa: E402

# ---------------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rows(samples: list[Sample], turns: int) -> list[dict[str, Any]]:
    out = []
    for k in range(1, turns + 1):
        by = {v: [s for s in samples if s.turn == k and s.variant == v] for v in ("chained", "full", "cold", "canonical")}
        row: dict[str, Any] = {"turn": k}
        row["other_cpu"] = statistics.fmean([s.other_cpu for v in ("chained", "full", "cold") for s in by[v]] or [0.0])
        for v, ss in by.items():
            row[f"{v}_ttft_ms"] = med([s.ttft_ms for s in ss])
            row[f"{v}_input"] = sorted({s.input_tokens for s in ss})
            row[f"{v}_cached"] = sorted({s.cached_tokens for s in ss})
            row[f"{v}_cached_med"] = med([s.cached_tokens for s in ss])
        out.append(row)
    return out


def _tokens(values: list[int]) -> str:
    return "–".join(str(v) for v in (values if len(values) <= 1 else [values[0], values[-1]])) if values else "-"


def table(rs: list[dict[str, Any]], cold: bool) -> str:
    head = "| turn | prompt tokens | chained TTFT ms | full TTFT ms | full / chained | cached chained | cached full |"
    sep = "|--:|--:|--:|--:|--:|--:|--:|"
    if cold:
        head += " cold TTFT ms (cached) | cold / chained |"
        sep += "--:|--:|"
    head += " other CPU |"
    sep += "--:|"
    lines = [head, sep]
    for r in rs:
        prompt = _tokens(r["chained_input"])
        if r["full_input"] != r["chained_input"]:
            prompt += f" (full: {_tokens(r['full_input'])})"
        ratio = r["full_ttft_ms"] / r["chained_ttft_ms"]
        cells = [
            str(r["turn"]),
            prompt,
            f"{r['chained_ttft_ms']:.0f}",
            f"{r['full_ttft_ms']:.0f}",
            f"{ratio:.2f}",
            _tokens(r["chained_cached"]),
            _tokens(r["full_cached"]),
        ]
        if cold and r["cold_input"]:
            cells += [f"{r['cold_ttft_ms']:.0f} ({_tokens(r['cold_cached'])})", f"{r['cold_ttft_ms'] / r['chained_ttft_ms']:.2f}"]
        elif cold:
            cells += ["", ""]
        cells.append(f"{r['other_cpu']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(rs: list[dict[str, Any]], title: str, path: Path, cold: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    turns = [r["turn"] for r in rs]
    prompt = [r["chained_input"][-1] if r["chained_input"] else 0 for r in rs]
    series = [("chained", "previous_response_id", "o-"), ("full", "full input, store=false", "s--")]
    if cold:
        series.append(("cold", "full input, nothing cached (reference)", "^:"))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for v, label, style in series:
        got = [r for r in rs if r[f"{v}_input"]]  # the cold reference is not taken at every turn
        ax1.plot([r["turn"] for r in got], [r[f"{v}_ttft_ms"] / 1000 for r in got], style, label=label)
        ax2.plot([r["turn"] for r in got], [r[f"{v}_cached_med"] for r in got], style, label=label)
    ax2.plot(turns, prompt, "k-", alpha=0.25, lw=6, label="prompt tokens")
    ticks = [f"{t}\n{p} tok" for t, p in zip(turns, prompt, strict=True)]
    for ax in (ax1, ax2):
        ax.set_xticks(turns, ticks, fontsize=8)
        ax.set_xlabel("turn (prompt tokens)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("time to first token, s (median)")
    ax1.set_ylim(bottom=0)
    ax2.set_ylabel("cached prompt tokens (usage)")
    ax2.set_ylim(bottom=0)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
