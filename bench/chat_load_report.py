"""Rendering of a bench/chat_load.py run: the markdown tables, the targets, the chart, the README block."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR  # noqa: E402


def fmt_s(v: float | None) -> str:
    return "-" if v is None else "never" if math.isinf(v) else f"{v:.2f}s"


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}ms"


# ---------------------------------------------------------------------------- report


def table(report: dict[str, Any]) -> str:
    raw = {r["n"]: r for r in (report.get("raw") or {}).get("results", [])}
    lines = [
        "| server | clients | tok/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | completed | errors | truncated"
        " | cancelled at cap | server CPU | other CPU | RSS MiB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for srv in report["servers"]:
        for conc, m in sorted(srv["levels"].items(), key=lambda kv: int(kv[0])):
            ge = "≥" if m["ttft_censored"] else ""
            lines.append(
                f"| {srv['label']} | {conc} | {m['tok_s']:.1f} | {ge}{fmt_s(m['ttft_p50'])} | {ge}{fmt_s(m['ttft_p99'])} | "
                f"{fmt_ms(m['itl_p50'])} | {fmt_ms(m['itl_p99'])} | {m['completed']} | {m['errors']} | {m['truncated']} | "
                f"{m['cancelled_at_cap']} | {m['server_cpu_cores']:.2f} | {m.get('other_cpu_cores', 0):.2f} | "
                f"{m['rss_mib']:.0f} |"
            )
    for n, r in sorted(raw.items()):
        lines.append(
            f"| raw `llama_decode` ceiling | {n} seq | {r['tok_s']:.1f} | | | {r['ms_per_step']:.0f}ms/step"
            f" | | | | | | | {r.get('other_cpu_cores', 0):.2f} | |"
        )
    return "\n".join(lines)


def prefix_table(report: dict[str, Any]) -> str:
    rows = [
        "| server | A: cold, ~1k-token system prompt | B: same prefix, next question"
        " | C: same prefix after another request | B/A |",
        "|---|--:|--:|--:|--:|",
    ]
    for srv in report["servers"]:
        p = srv.get("prefix")
        if not p:
            continue

        def cell(k: str, p: dict[str, Any] = p) -> str:
            v = p[k]
            return "error" if v["ttft_s"] is None else f"{v['ttft_s']:.3f}s ({v['prompt_tokens'] or '?'} tok)"

        rows.append(
            f"| {srv['label']} | {cell('A')} | {cell('B')} | {cell('C')} | {p['b_over_a']:.3f} |"
            if p["b_over_a"]
            else f"| {srv['label']} | {cell('A')} | {cell('B')} | {cell('C')} | - |"
        )
    return "\n".join(rows) if len(rows) > 2 else ""


def targets(report: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, goal, passed)."""
    by = {s["name"]: s for s in report["servers"]}
    fp = by.get(f"faceplate-np{report['args']['n_parallel']}", {}).get("levels", {})
    peer = by.get("llamacpp-nointerrupt", {}).get("levels", {})
    raw = {r["n"]: r["tok_s"] for r in (report.get("raw") or {}).get("results", [])}
    out: list[tuple[str, str, str, bool | None]] = []

    def ratio(name: str, a: float | None, b: float | None, goal: float, *, le: bool = False) -> None:
        if a is None or not b:
            out.append((name, "not measured", ("≤ " if le else "≥ ") + f"{goal:.3g}", None))
            return
        r = a / b
        out.append((name, f"{r:.2f} ({a:.3g} / {b:.3g})", ("≤ " if le else "≥ ") + f"{goal:.3g}", r <= goal if le else r >= goal))

    def lv(levels: dict, c: int, key: str) -> float | None:
        m = levels.get(c)
        return m[key] if m else None

    ratio("1 client: Faceplate tok/s ÷ raw 1-seq decode", lv(fp, 1, "tok_s"), raw.get(1), 0.90)
    cpp = by.get("llama-server", {}).get("levels", {})
    ratio("1 client: Faceplate tok/s ÷ llama-server's", lv(fp, 1, "tok_s"), lv(cpp, 1, "tok_s"), 1.0)
    ratio("1 client: Faceplate TTFT p50 ÷ llama-server's", lv(fp, 1, "ttft_p50"), lv(cpp, 1, "ttft_p50"), 1.0, le=True)
    ratio("8 clients: Faceplate tok/s ÷ llama-server's", lv(fp, 8, "tok_s"), lv(cpp, 8, "tok_s"), 1.15)
    ratio("8 clients: Faceplate tok/s ÷ raw 8-seq ceiling (issue 15's bar)", lv(fp, 8, "tok_s"), raw.get(8), 0.95)
    ratio("8 clients: Faceplate tok/s ÷ llama-cpp-python (non-interrupting)", lv(fp, 8, "tok_s"), lv(peer, 8, "tok_s"), 2.5)
    if raw.get(8) and lv(peer, 8, "tok_s"):
        bound = raw[8] / lv(peer, 8, "tok_s")
        out.append(
            ("(bound) raw 8-seq ceiling ÷ llama-cpp-python at 8: the most any server here could reach", f"{bound:.2f}", "", None)
        )
    ratio("8 clients: Faceplate tok/s ÷ raw 8-seq ceiling", lv(fp, 8, "tok_s"), raw.get(8), 0.80)
    ratio("8 clients: Faceplate TTFT p50 ÷ llama-cpp-python's", lv(fp, 8, "ttft_p50"), lv(peer, 8, "ttft_p50"), 0.2, le=True)
    for s in report["servers"]:
        if not s["name"].startswith("faceplate"):
            continue
        m = s["levels"].get(32)
        if m:
            ok = m["errors"] == 0 and m["truncated"] == 0 and m.get("server_alive", True)
            out.append(
                (f"32 clients, {s['label']}: errors / truncated / peak RSS",
                 f"{m['errors']} / {m['truncated']} / {s.get('peak_rss_mib', 0):.0f} MiB"
                 f" (after start {s.get('rss_after_start_mib', 0):.0f})",
                 "0 / 0 / bounded", ok)
            )  # fmt: skip
    p = by.get(f"faceplate-np{report['args']['n_parallel']}", {}).get("prefix")
    ratio("shared prefix: Faceplate TTFT B ÷ A", p and p["B"]["ttft_s"], p and p["A"]["ttft_s"], 1 / 3, le=True)
    return out


def targets_table(rows: list[tuple[str, str, str, bool | None]]) -> str:
    lines = ["| target | measured | goal | |", "|---|---|---|---|"]
    for name, measured, goal, ok in rows:
        lines.append(f"| {name} | {measured} | {goal} | {'pass' if ok else 'MISS' if ok is not None else '-'} |")
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for srv in report["servers"]:
        lv = sorted((int(c), m) for c, m in srv["levels"].items())
        if not lv:
            continue
        xs = [c for c, _ in lv]
        ax1.plot(xs, [m["tok_s"] for _, m in lv], marker="o", label=srv["label"])
        ttft = [m["ttft_p50"] if m["ttft_p50"] is not None and not math.isinf(m["ttft_p50"]) else math.nan for _, m in lv]
        ax2.plot(xs, ttft, marker="o", label=srv["label"])
    raw = sorted((r["n"], r["tok_s"]) for r in (report.get("raw") or {}).get("results", []))
    if raw:
        ax1.plot([n for n, _ in raw], [t for _, t in raw], "k--", marker="x", label="raw llama_decode ceiling (N seq/batch)")
    ticks = sorted({int(c) for srv in report["servers"] for c in srv["levels"]} | {n for n, _ in raw})
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("concurrent streaming clients")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_ylabel("output tokens/s (sum over clients)")
    ax1.set_title("Throughput")
    ax1.set_ylim(bottom=0)
    ax2.set_ylabel("time to first token, p50 (s)")
    ax2.set_yscale("log")
    ax2.set_title("TTFT p50 (log scale)")
    ax1.legend(fontsize=8)
    mc = report["machine"]
    fig.suptitle(
        f"SmolLM2-135M Q4_1, {report['args']['threads']} threads, max_tokens {report['args']['max_tokens']}"
        f" - {mc['cpu']}, {mc['cores']} cores - {mc['date']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def efficiency_table(report: dict[str, Any]) -> str:
    """Faceplate's own counters (/health) against the raw rates: how much of the wall time the work
    it did would take at raw speed (decode at the N-sequence rate, new prompt tokens at the prefill rate)."""
    raw = {r["n"]: r for r in (report.get("raw") or {}).get("results", [])}
    rows = [
        "| server | clients | generated | prompt tokens (reused) | wall s | s at raw speed | efficiency | steps | tokens/step |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for srv in report["servers"]:
        if not srv["name"].startswith("faceplate"):
            continue
        n_par = int(srv["name"].rsplit("np", 1)[1])
        for conc, m in sorted(srv["levels"].items()):
            e, r = m.get("engine"), raw.get(min(int(conc), n_par))
            if not e or not r or not e.get("steps"):
                continue
            new = e["prompt_tokens"] - e["prompt_tokens_reused"]
            need = e["generated_tokens"] / r["tok_s"] + new / r["prefill_tok_s"]
            rows.append(
                f"| {srv['label']} | {conc} | {e['generated_tokens']} | {e['prompt_tokens']} ({e['prompt_tokens_reused']}) | "
                f"{m['wall_s']:.1f} | {need:.1f} | {need / m['wall_s']:.0%} | {e['steps']} | {e['tokens_per_step']:.2f} |"
            )
    return "\n".join(rows) if len(rows) > 2 else ""


def markdown(report: dict[str, Any]) -> str:
    mc, a = report["machine"], report["args"]
    parts = [
        f"Measured {mc['date']} on {mc['cpu']}, {mc['cores']} cores ({mc['flags']}), {mc['memory']}, Python {mc['python']}; "
        f"`{a['command']}`: {a['duration']:g} s per level, drain cap {a['drain_cap']:g} s, max_tokens {a['max_tokens']}, "
        f"temperature 0.7, {a['threads']} threads, total {report['total_s'] / 60:.1f} min.",
        "",
        table(report),
        "",
    ]
    other = [m.get("other_cpu_cores", 0) for srv in report["servers"] for m in srv["levels"].values()]
    other += [r.get("other_cpu_cores", 0) for r in (report.get("raw") or {}).get("results", [])]
    if other:
        noisy = sum(1 for o in other if o >= 0.3)
        parts += [
            f"Other processes on the machine used {sum(other) / len(other):.2f} cores on average during the measurements "
            f"(max {max(other):.2f}; {noisy} of {len(other)} measurements at ≥ 0.3 cores: those are slowed down).",
            "",
        ]
    pt = prefix_table(report)
    if pt:
        parts += ["Shared prefix (time to first token, temperature 0, max_tokens 8):", "", pt, ""]
    et = efficiency_table(report)
    if et:
        parts += [
            'Where Faceplate\'s time went (its /health counters; "s at raw speed" is what the same decode and prompt work '
            "takes in raw_decode.py, so efficiency = raw-speed time ÷ wall time, drain included):",
            "",
            et,
            "",
        ]
    raw = (report.get("raw") or {}).get("results", [])
    if raw:
        us = sum(r["sampler_chain_us_per_token"] for r in raw) / len(raw)
        parts += [
            f"Faceplate's sampler chain (temperature + seeded draw over the whole vocabulary) costs {us:.0f} µs per token.",
            "",
        ]
    parts += ["Targets (ratios from this run):", "", targets_table(targets(report))]
    return "\n".join(parts)


def save_readme(md: str) -> None:
    readme = BENCH_DIR / "README.md"
    text = readme.read_text() if readme.exists() else ""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    block = f"{start}\n{md}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
    readme.write_text(text)
