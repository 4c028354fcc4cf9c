"""Rendering of a bench/batch_interactive.py run: the summary of each phase, the tables and notes
(stdout, bench/out/batch_interactive.md) and the chart."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_interactive_load import Phase, Poll, Request  # noqa: E402
from batch_interactive_workload import config_settings  # noqa: E402
from common import BENCH_DIR as BENCH  # noqa: E402
from common import OUT_DIR, percentile  # noqa: E402

# ---------------------------------------------------------------------------- report


def completed_at(polls: list[Poll], t: float) -> float:
    """Lines done at time t, linearly interpolated between polls."""
    before = [p for p in polls if p.t <= t]
    after = [p for p in polls if p.t >= t]
    if not before:
        return 0.0
    if not after:
        return float(before[-1].completed + before[-1].failed)
    p, q = before[-1], after[0]
    a, b = p.completed + p.failed, q.completed + q.failed
    return float(a) if q.t == p.t else a + (b - a) * (t - p.t) / (q.t - p.t)


def other_cpu(polls: list[Poll], windows: list[tuple[float, float]]) -> float | None:
    """Cores other processes used on average over the windows, from the polls nearest inside each."""
    busy = ours = secs = 0.0
    for w0, w1 in windows:
        inside = [p for p in polls if w0 <= p.t <= w1 and p.busy_cpu_s > 0]
        if len(inside) < 2:
            continue
        a, b = inside[0], inside[-1]
        busy, ours, secs = busy + b.busy_cpu_s - a.busy_cpu_s, ours + b.ours_cpu_s - a.ours_cpu_s, secs + b.t - a.t
    return max(0.0, (busy - ours) / secs) if secs > 0 else None


def summarize(phase: Phase) -> dict[str, Any]:
    reqs = [r for r in phase.requests if r.overlapped]
    ttft = [r.ttft_s for r in reqs]
    row: dict[str, Any] = {
        "config": phase.config,
        "phase": phase.phase,
        "requests": len(reqs),
        "after_batch": len(phase.requests) - len(reqs),
        "ttft_p50": percentile(ttft, 50),
        "ttft_p90": percentile(ttft, 90),
        "ttft_p99": percentile(ttft, 99),
        "ttft_max": max(ttft) if ttft else None,
        "tokens_mean": (sum(r.completion_tokens for r in reqs) / len(reqs)) if reqs else None,
        "itl_p50": percentile([r.itl_s for r in reqs if r.itl_s is not None], 50),
        "max_gap_p50": percentile([r.max_gap_s for r in reqs if r.max_gap_s is not None], 50),
        "p50_before": percentile([r.ttft_s for r in reqs if r.part == "before"], 50),
        "p50_after": percentile([r.ttft_s for r in reqs if r.part == "after"], 50),
        "other_cpu": phase.other_cpu,
        "wall_s": phase.wall_s,
    }
    if phase.phase != "batch" or phase.in_progress_t is None:
        return row
    polls = phase.polls
    total = max((p.total for p in polls), default=0)
    end = phase.done_t if phase.done_t is not None else polls[-1].t
    row["lines"] = total
    row["final_status"] = phase.final_status
    row["failed_lines"] = max((p.failed for p in polls), default=0)
    row["batch_s"] = end - phase.in_progress_t
    row["batch_rate"] = (completed_at(polls, end)) / row["batch_s"] if row["batch_s"] > 0 else None
    row["batch_slots_max"] = max((p.batch_sequences for p in polls), default=-1)
    row["running_max"] = max((p.running_sequences for p in polls), default=-1)
    if reqs:
        w0, w1 = min(r.start for r in reqs), max(r.end for r in reqs)
        row["window_s"] = w1 - w0
        row["rate_with"] = (completed_at(polls, w1) - completed_at(polls, w0)) / (w1 - w0)
        lead = (phase.in_progress_t, w0)
        tail = (w1, end)
        lines_alone = (completed_at(polls, lead[1]) - completed_at(polls, lead[0])) + (
            completed_at(polls, tail[1]) - completed_at(polls, tail[0])
        )
        secs_alone = (lead[1] - lead[0]) + max(0.0, tail[1] - tail[0])
        row["rate_alone"] = lines_alone / secs_alone if secs_alone > 0 else None
        row["alone_s"] = secs_alone
        inside = [p for p in polls if w0 <= p.t <= w1]
        row["batch_slots_with"] = max((p.batch_sequences for p in inside), default=-1)
        window = other_cpu(polls, [(w0, w1)])  # while the clients ran, not over the whole phase
        row["other_cpu"] = phase.other_cpu if window is None else window
        row["other_cpu_alone"] = other_cpu(polls, [lead, tail])
    return row


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def fmt_c(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def fmt_x(v: float | None, base: float | None) -> str:
    return "-" if v is None or not base else f"{v / base:.2f}x"


def settings_of(config: str, n_parallel: int) -> str:
    conc, slots = config_settings(config, n_parallel)
    return f"concurrency {conc}, slots {slots}"


def table(rows: list[dict[str, Any]], n_parallel: int) -> str:
    head = (
        "| config (batch_concurrency, batch_slots) | phase | requests | TTFT p50 | TTFT p90 | TTFT p99 | p50 vs alone "
        "| p99 vs alone | ITL p50 | batch lines/s | batch slots held (max) | other CPU |"
    )
    lines = [head, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    alone = {r["config"]: r for r in rows if r["phase"] == "alone"}
    for r in rows:
        base = alone.get(r["config"])
        name = f"{r['config']} ({settings_of(r['config'], n_parallel)})"
        itl = "-" if r["itl_p50"] is None else f"{r['itl_p50'] * 1000:.0f}ms"
        ttft = [fmt_s(r["ttft_p50"]), fmt_s(r.get("ttft_p90")), fmt_s(r["ttft_p99"])]
        if r["phase"] == "alone":
            cells = [name, "clients alone", str(r["requests"]), *ttft, "1.00x", "1.00x", itl, "-", "-", fmt_c(r["other_cpu"])]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        n = str(r["requests"]) + (f" (+{r['after_batch']} after)" if r["after_batch"] else "")
        ratios = [fmt_x(r["ttft_p50"], base and base["ttft_p50"]), fmt_x(r["ttft_p99"], base and base["ttft_p99"])]
        rate = f"{r['rate_with']:.2f}" if r.get("rate_with") is not None else "-"
        cells = [
            name,
            "clients + batch",
            n,
            *ttft,
            *ratios,
            itl,
            rate,
            str(r.get("batch_slots_with", "-")),
            fmt_c(r["other_cpu"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
        rate = f"{r['rate_alone']:.2f}" if r.get("rate_alone") is not None else "-"
        slots = str(r.get("batch_slots_max", "-"))
        cells = [name, "batch alone (before + after the clients)", *["-"] * 7, rate, slots, fmt_c(r.get("other_cpu_alone"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(rows: list[dict[str, Any]], phases: list[Phase]) -> str:
    out = []
    for r in rows:
        if r["phase"] == "alone":
            out.append(
                f"- {r['config']}, clients alone: TTFT p50 {fmt_s(r['p50_before'])} before the batch, "
                f"{fmt_s(r['p50_after'])} after it; mean completion tokens {r['tokens_mean'] or 0:.1f}; "
                f"longest gap between two chunks of a request, median {fmt_s(r.get('max_gap_p50'))}."
            )
            continue
        if "lines" not in r:
            continue
        ph = next(p for p in phases if p.config == r["config"] and p.phase == "batch")
        server_s = (
            f"{ph.server_completed_at - ph.server_in_progress_at} s by its own in_progress_at/completed_at"
            if ph.server_completed_at and ph.server_in_progress_at
            else "no server timestamps"
        )
        out.append(
            f"- {r['config']}, batch: {r['lines']} lines {r['final_status']} ({r['failed_lines']} failed) "
            f"{r['batch_s']:.0f} s after in_progress was seen ({server_s}): {r['batch_rate']:.2f} lines/s overall; "
            f"the clients overlapped it for {r.get('window_s', 0):.0f} s and it ran alone for {r.get('alone_s', 0):.0f} s; "
            f"{ph.output_lines} output lines, {ph.output_prompt_tokens_mean:.1f} prompt and {ph.output_tokens_mean:.1f} "
            f"completion tokens per line on average "
            f"(first answers: {', '.join(repr(x) for x in ph.output_sample)}); the clients' requests had "
            f"{r['tokens_mean'] or 0:.1f} completion tokens on average and their longest gap between two chunks "
            f"had a median of {fmt_s(r.get('max_gap_p50'))}; most sequences running at once {r['running_max']}."
        )
    return "\n".join(out)


def chart(phases: list[Phase], rows: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(r["config"] for r in rows))
    fig, axes = plt.subplots(1, 2 + len(configs), figsize=(5 + 4.2 * (1 + len(configs)), 4.4))
    ax1, ax2, timelines = axes[0], axes[1], axes[2:]
    width = 0.38
    for k, (label, style) in enumerate((("clients alone", "alone"), ("clients + batch", "batch"))):
        xs = [i + (k - 0.5) * width for i in range(len(configs))]
        got = [next((r for r in rows if r["config"] == c and r["phase"] == style), None) for c in configs]
        p50 = [r["ttft_p50"] or 0 if r else 0 for r in got]
        p99 = [r["ttft_p99"] or 0 if r else 0 for r in got]
        color = "tab:blue" if style == "alone" else "tab:orange"
        ax1.bar(xs, p99, width, color=color, alpha=0.35, label=f"{label}, p99")
        ax1.bar(xs, p50, width, color=color, label=f"{label}, p50")
    ax1.set_xticks(range(len(configs)), configs)
    ax1.set_ylabel("time to first token, s")
    ax1.set_title("interactive TTFT (4 streaming clients)", fontsize=9)
    ax1.legend(fontsize=7)
    ax1.grid(True, axis="y", alpha=0.3)
    batch_rows = [next((r for r in rows if r["config"] == c and r["phase"] == "batch"), {}) for c in configs]
    for k, (key, label, color) in enumerate(
        (("rate_alone", "batch alone", "tab:green"), ("rate_with", "batch + 4 clients", "tab:red"))
    ):
        xs = [i + (k - 0.5) * width for i in range(len(configs))]
        ax2.bar(xs, [r.get(key) or 0 for r in batch_rows], width, color=color, label=label)
    ax2.set_xticks(range(len(configs)), configs)
    ax2.set_ylabel("batch lines/s")
    ax2.set_title("batch throughput", fontsize=9)
    ax2.legend(fontsize=7)
    ax2.grid(True, axis="y", alpha=0.3)
    for ax, config in zip(timelines, configs, strict=True):
        alone = next((p for p in phases if p.config == config and p.phase == "alone"), None)
        batch = next((p for p in phases if p.config == config and p.phase == "batch"), None)
        if batch is None or batch.in_progress_t is None:
            continue
        t0 = batch.in_progress_t
        reqs = [r for r in batch.requests if r.overlapped]
        ax.scatter([r.start - t0 for r in reqs], [r.ttft_s for r in reqs], s=8, color="tab:orange", label="TTFT, clients + batch")
        if alone and alone.requests:
            p50 = percentile([r.ttft_s for r in alone.requests], 50)
            ax.axhline(p50, color="tab:blue", lw=1, ls="--", label="TTFT p50, clients alone")
        ax.set_xlabel("s since the batch went in_progress")
        ax.set_ylabel("TTFT, s")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        twin = ax.twinx()
        polls = [p for p in batch.polls if p.t >= t0]
        twin.plot([p.t - t0 for p in polls], [p.completed + p.failed for p in polls], "k-", lw=1, alpha=0.6, label="lines done")
        twin.set_ylabel("batch lines done")
        twin.set_ylim(bottom=0)
        ax.set_title(f"{config}: timeline", fontsize=9)
        handles = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_phases(raw: dict[str, Any]) -> list[Phase]:
    phases = []
    for d in raw["phases"]:
        requests = [Request(**{"max_gap_s": None, **r}) for r in d["requests"]]
        polls = [Poll(**q) for q in d["polls"]]
        phases.append(Phase(**{**d, "requests": requests, "polls": polls}))
    return phases


def render(raw: dict[str, Any], save: bool) -> None:
    """The tables (stdout, bench/out/batch_interactive.md) and, with ``save``, the chart, from raw results."""
    facts, args, wall = raw["machine"], argparse.Namespace(**raw["args"]), raw["wall_s"]
    phases = load_phases(raw)
    configs = list(dict.fromkeys(p.config for p in phases))
    load0 = raw.get("load_avg_start")
    rows = [summarize(p) for p in phases]
    title = (
        f"{facts['date']}, {facts['cpu']}, {facts['cores']} cores; SmolLM2-135M Q4_1, --threads {args.threads}, "
        f"--n-parallel {args.n_parallel}; {args.clients} clients x {args.requests} streamed requests "
        f"(max_tokens {args.max_tokens}) vs a {args.lines}-line batch (max_tokens {args.batch_max_tokens})"
    )
    text = [
        f"Measured {facts['date']} on {facts['cpu']}, {facts['cores']} cores ({facts['flags']}), {facts['memory']}, "
        f"Python {facts['python']}; `bench/batch_interactive.py` (--lines {args.lines} --requests {args.requests} "
        f"--clients {args.clients} --max-tokens {args.max_tokens} --batch-max-tokens {args.batch_max_tokens} "
        f"--threads {args.threads} --n-parallel {args.n_parallel} --configs {','.join(configs)}), total "
        f"{wall / 60:.1f} min; load average at the start {'?' if load0 is None else f'{load0:.2f}'}.",
        "",
        table(rows, args.n_parallel),
        "",
        notes(rows, phases),
    ]
    report = "\n".join(text)
    print("\n" + report)
    (OUT_DIR / "batch_interactive.md").write_text(report + "\n")
    if save:
        chart(phases, rows, title, BENCH / "batch_interactive.png")
        print(f"\nchart: {BENCH / 'batch_interactive.png'}", file=sys.stderr)
