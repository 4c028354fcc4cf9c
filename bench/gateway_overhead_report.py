"""Rendering of a bench/gateway_overhead.py run: medians of the round figures, the tables, the chart,
the README block."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, OUT_DIR  # noqa: E402

LABELS = {"direct": "A: direct to mockai", "faceplate": "B: Faceplate --upstream", "litellm": "C: LiteLLM proxy"}
CHART = BENCH_DIR / "gateway_overhead.png"
START, END = "<!-- gateway_overhead:start -->", "<!-- gateway_overhead:end -->"


def med(rounds: list[dict[str, Any]], key: str) -> float | None:
    """Median over rounds of one figure (rounds without it are left out)."""
    vals = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def figures(run: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """target -> {figure: median of round figures}."""
    out: dict[str, dict[str, float | None]] = {}
    for target, phases in run["results"].items():
        f: dict[str, float | None] = {}
        for key, rounds in phases.items():
            for fig in (
                "p50_ms",
                "p99_ms",
                "rps",
                "ttft_p50_ms",
                "gap_p50_ms",
                "gap_p99_ms",
                "cpu_ms_per_req",
                "cpu_us_per_chunk",
                "upstream_cpu_ms_per_req",
                "client_cpu_ms_per_req",
                "litellm_overhead_ms_p50",
                "other_cpu_cores",
            ):
                f[f"{key}.{fig}"] = med(rounds, fig)
            f[f"{key}.errors"] = sum(r["errors"] for r in rounds)
            f[f"{key}.requests"] = sum(r["requests"] for r in rounds)
        out[target] = f
    return out


def _n(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _plus(v: float | None, base: float | None, fmt: str = "+.2f") -> str:
    return "-" if v is None or base is None else format(v - base, fmt)


def tables(run: dict[str, Any]) -> str:
    fig = figures(run)
    d = fig.get("direct", {})
    lines = [
        "Per target (ms unless stated; medians of the round figures):",
        "",
        "| target | c=1 p50 | c=1 p99 | c=16 p50 | c=16 p99 | c=16 req/s | gateway CPU ms/req (c=16)"
        " | stream TTFT p50 c=1 | TTFT p50 c=16 | gap p99 c=1 | gap p99 c=16 | gateway CPU µs/chunk (c=16) | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for t, f in fig.items():
        errors = sum(int(v or 0) for k, v in f.items() if k.endswith(".errors"))
        direct = t == "direct"
        lines.append(
            f"| {LABELS[t]} | {_n(f['ns_c1.p50_ms'])} | {_n(f['ns_c1.p99_ms'])} | {_n(f['ns_c16.p50_ms'])}"
            f" | {_n(f['ns_c16.p99_ms'])} | {_n(f['ns_c16.rps'], '.0f')}"
            f" | {'-' if direct else _n(f['ns_c16.cpu_ms_per_req'], '.3f')}"
            f" | {_n(f['st_c1.ttft_p50_ms'])} | {_n(f['st_c16.ttft_p50_ms'])} | {_n(f['st_c1.gap_p99_ms'])}"
            f" | {_n(f['st_c16.gap_p99_ms'])} | {'-' if direct else _n(f['st_c16.cpu_us_per_chunk'], '.1f')} | {errors} |"
        )
    lines += [
        "",
        "Added by the gateway (target − direct, ms; CPU is the gateway's own):",
        "",
        "| gateway | +p50 c=1 | +p99 c=1 | +p50 c=16 | +p99 c=16 | CPU ms/req c=1 | CPU ms/req c=16"
        " | +TTFT p50 c=1 | +TTFT p50 c=16 | +gap p99 c=1 | +gap p99 c=16 | CPU µs/chunk c=1 | CPU µs/chunk c=16 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for t, f in fig.items():
        if t == "direct":
            continue
        cells = [_plus(f[k], d.get(k)) for k in ("ns_c1.p50_ms", "ns_c1.p99_ms", "ns_c16.p50_ms", "ns_c16.p99_ms")]
        cells += [_n(f["ns_c1.cpu_ms_per_req"], ".3f"), _n(f["ns_c16.cpu_ms_per_req"], ".3f")]
        cells += [
            _plus(f[k], d.get(k)) for k in ("st_c1.ttft_p50_ms", "st_c16.ttft_p50_ms", "st_c1.gap_p99_ms", "st_c16.gap_p99_ms")
        ]
        cells += [_n(f["st_c1.cpu_us_per_chunk"], ".1f"), _n(f["st_c16.cpu_us_per_chunk"], ".1f")]
        lines.append(f"| {LABELS[t]} | " + " | ".join(cells) + " |")
    if "litellm" in fig:
        f = fig["litellm"]
        hdr = [f.get(f"{k}.litellm_overhead_ms_p50") for k in ("ns_c1", "ns_c16", "st_c1", "st_c16")]
        if any(v is not None for v in hdr):
            lines += [
                "",
                "LiteLLM's own `x-litellm-overhead-duration-ms` header, p50: "
                + ", ".join(f"{k} {_n(v)} ms" for k, v in zip(("c=1", "c=16", "stream c=1", "stream c=16"), hdr, strict=True))
                + ".",
            ]
    other = [v for f in fig.values() for k, v in f.items() if k.endswith("other_cpu_cores") and v is not None]
    up = {t: f.get("ns_c16.upstream_cpu_ms_per_req") for t, f in fig.items()}
    cl = {t: f.get("ns_c16.client_cpu_ms_per_req") for t, f in fig.items()}
    idle = run.get("idle_cpu_ms_per_s") or {}
    if idle:
        lines += [
            "",
            "Idle gateway CPU (no requests, 3 s): " + ", ".join(f"{LABELS[t]} {v:.1f} ms/s" for t, v in idle.items()) + ".",
        ]
    lines += [
        "",
        f"Other processes used {statistics.mean(other) if other else 0:.2f} cores on average during the phases"
        f" (max {max(other) if other else 0:.2f}). mockai CPU ms/req at c=16: "
        + ", ".join(f"{t} {_n(v, '.3f')}" for t, v in up.items())
        + "; load generator CPU ms/req: "
        + ", ".join(f"{t} {_n(v, '.3f')}" for t, v in cl.items())
        + ".",
    ]
    return "\n".join(lines)


def header(run: dict[str, Any]) -> str:
    mc, a, v = run["machine"], run["args"], run["versions"]
    pin = a.get("pinned")
    pin_s = (
        f"gateway on CPU {pin['gateway']}, load generator + mockai on CPU {pin['load generator + mockai']}"
        if pin
        else "not pinned"
    )
    cmd = "bench/gateway_overhead.py" + (" --quick" if a.get("quick") else "")
    return (
        f"Measured {mc['date']} on {mc['cpu']}, {mc['cores']} cores, {mc['memory']}, Python {mc['python']}; "
        f"`{cmd}`: {a['rounds']} rounds × {a['seconds']:g} s per phase, targets interleaved, {pin_s}; "
        f"non-stream {a['nonstream_tokens']} tokens, streams {a['stream_chunks']} chunks {a['interval_ms']:g} ms apart; "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + f"; total {run['total_s'] / 60:.1f} min."
    )


def chart(run: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = figures(run)
    d = fig["direct"]
    gws = [t for t in fig if t != "direct"]
    panels = [  # title, (label, figure), minus direct?, log scale?
        ("non-stream, 1 client: added ms", [("p50", "ns_c1.p50_ms"), ("p99", "ns_c1.p99_ms")], True, False),
        ("non-stream, 16 clients: added ms", [("p50", "ns_c16.p50_ms"), ("p99", "ns_c16.p99_ms")], True, False),
        (
            "streams of 100 chunks: added ms (log)",
            [("TTFT c=1", "st_c1.ttft_p50_ms"), ("TTFT c=16", "st_c16.ttft_p50_ms"), ("gap p99 c=16", "st_c16.gap_p99_ms")],
            True,
            True,
        ),
        ("gateway CPU ms per request", [("c=1", "ns_c1.cpu_ms_per_req"), ("c=16", "ns_c16.cpu_ms_per_req")], False, False),
        ("gateway CPU µs per chunk", [("c=1", "st_c1.cpu_us_per_chunk"), ("c=16", "st_c16.cpu_us_per_chunk")], False, False),
    ]
    fig_, axes = plt.subplots(1, len(panels), figsize=(17, 4.4))
    width = 0.8 / max(1, len(gws))
    for ax, (title, items, minus_direct, log) in zip(axes, panels, strict=True):
        for i, t in enumerate(gws):
            vals = []
            for _label, key in items:
                v, base = fig[t].get(key), d.get(key)
                if v is None or (minus_direct and base is None):
                    vals.append(float("nan"))
                    continue
                v = v - base if minus_direct else v
                vals.append(v if v > 0 or not log else float("nan"))
            xs = [j + (i - (len(gws) - 1) / 2) * width for j in range(len(items))]
            bars = ax.bar(xs, vals, width, label=LABELS[t])
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_xticks(range(len(items)), [label for label, _ in items], fontsize=8)
        ax.set_title(title, fontsize=9)
        if log:
            ax.set_yscale("log")
        ax.axhline(0, color="k", lw=0.5)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    mc = run["machine"]
    fig_.suptitle(f"Gateway overhead vs direct to mockai - {mc['cpu']}, {mc['cores']} cores - {mc['date']}", fontsize=9)
    fig_.tight_layout()
    fig_.savefig(path, dpi=110)
    plt.close(fig_)


def markdown(run: dict[str, Any]) -> str:
    return header(run) + "\n\n" + tables(run)


def save_readme(md: str) -> None:
    readme = BENCH_DIR / "README.md"
    text = readme.read_text()
    block = f"{START}\n{md}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = (
            text.rstrip() + "\n\n## `gateway_overhead.py`: Faceplate vs LiteLLM in front of the same upstream\n\n" + block + "\n"
        )
    readme.write_text(text)


def render(run: dict[str, Any], *, save: bool) -> None:
    md = markdown(run)
    print(md)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "gateway_overhead.md").write_text(md + "\n")
    chart(run, CHART if save else OUT_DIR / "gateway_overhead.png")
    if save:
        save_readme(md)
