"""Rendering of a bench/soak.py run: the summary and pass criteria, the markdown tables and the chart."""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile  # noqa: E402
from soak_calls import Result  # noqa: E402
from soak_mix import KINDS, OUTCOMES  # noqa: E402

RSS_WINDOW = 30.0  # seconds of samples whose median stands for "the RSS at" a moment
RSS_LIMIT = 0.10


def rss_at(rss: list[tuple[float, int]], t: float, window: float = RSS_WINDOW) -> float | None:
    """Median RSS (MiB) of the samples in (t - window, t]."""
    got = [kib for s, kib in rss if t - window < s <= t]
    return statistics.median(got) / 1024 if got else None


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    results = [Result(**r) for r in raw["results"]]
    args = raw["args"]
    rows = []
    for kind in [*KINDS, "all"]:
        rs = [r for r in results if kind in ("all", r.kind)]
        count = Counter(r.outcome for r in rs)
        lat = [r.latency for r in rs if r.outcome == "ok"]
        rows.append(
            {
                "kind": kind,
                "count": len(rs),
                **{o: count[o] for o in OUTCOMES},
                "p50": percentile(lat, 50),
                "p99": percentile(lat, 99),
            }
        )
    load_s = raw["load_s"]
    warm_t = min(args["warmup"], load_s / 2)
    rss_warm = rss_at(raw["rss"], warm_t)
    rss_end = rss_at(raw["rss"], load_s)
    rss_idle = raw["rss"][-1][1] / 1024 if raw["rss"] else None
    growth = (rss_end - rss_warm) / rss_warm if rss_warm and rss_end else None
    peak = max((kib for _, kib in raw["rss"]), default=0) / 1024
    after_warm = [(t, kib / 1024) for t, kib in raw["rss"] if warm_t <= t <= load_s]
    slope = None
    if len(after_warm) > 2:
        ts, ms = zip(*after_warm, strict=True)
        slope = statistics.linear_regression(ts, ms).slope * 60  # MiB per minute

    server_5xx = {
        route: {s: n for s, n in c.items() if int(s) >= 500 and int(s) != 503} for route, c in raw["log"]["statuses"].items()
    }
    server_5xx = {route: c for route, c in server_5xx.items() if c}
    bad_5xx = [r for r in results if r.outcome == "5xx"]
    no_retry = [r for r in results if r.outcome == "503" and not r.retry_after]
    unexpected_4xx = [r for r in results if r.outcome == "4xx" and (r.kind != "invalid" or r.detail)]
    failed = [r for r in results if r.outcome == "failed"]
    idle = raw["idle"]
    stuck = f", {raw['stuck_clients']} clients stuck" if raw["stuck_clients"] else ""
    criteria = [
        (
            "no 5xx except 503 with Retry-After (clients; server access log)",
            f"{len(bad_5xx)} other 5xx, {len(no_retry)} 503 without Retry-After; access log: {server_5xx or 'none'}",
            not bad_5xx and not no_retry and not server_5xx,
        ),
        ("every 4xx expected", f"{len(unexpected_4xx)} unexpected", not unexpected_4xx),
        ("no failed call (error event in a stream, malformed answer, timeout)", f"{len(failed)} failed", not failed),
        (
            f"idle within {args['idle_timeout']:g} s after the clients stopped, then still serving",
            (
                f"{'idle' if idle['ok'] else 'NOT idle'} after {idle['waited_s']:.1f} s: /health {idle['health']}; "
                f"/metrics {idle['metrics']}; clients stopped in {raw['clients_stop_s']:.1f} s{stuck}"
                f"; a fresh call after: {raw['after'] or 'ok'}"
            ),
            bool(idle["ok"]) and not raw["after"] and not raw["stuck_clients"],
        ),
        (
            f"RSS growth after warm-up < {RSS_LIMIT:.0%}",
            (
                f"{rss_warm:.0f} MiB at {warm_t:.0f} s -> {rss_end:.0f} MiB at {load_s:.0f} s: {growth:+.1%}"
                if growth is not None
                else "no samples"
            ),
            growth is not None and growth < RSS_LIMIT,
        ),
        ("no error-level line in the server log", f"{len(raw['log']['errors'])} lines", not raw["log"]["errors"]),
    ]
    return {
        "rows": rows,
        "rss": {
            "start": raw["rss_start_kib"] / 1024,
            "warm_t": warm_t,
            "warm": rss_warm,
            "end": rss_end,
            "idle": rss_idle,
            "peak": peak,
            "growth": growth,
            "slope": slope,
        },
        "criteria": criteria,
        "listed": {"5xx": bad_5xx + no_retry, "unexpected 4xx": unexpected_4xx, "failed": failed},
    }


def fmt_s(v: float | None) -> str:
    return "-" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")


def report(raw: dict[str, Any], s: dict[str, Any]) -> str:
    a, f = raw["args"], raw["machine"]
    cmd = "bench/soak.py" + (" --quick" if a.get("quick") else "") + (" --save" if a.get("save") else "")
    lines = [
        f"Measured {f['date']} on {f['cpu']}, {f['cores']} cores ({f['flags']}), {f['memory']}, Python {f['python']}; "
        f"`{cmd}`: {a['clients']} clients, {raw['load_s'] / 60:.1f} min of load, warm-up {s['rss']['warm_t']:.0f} s, "
        f"--threads {a['threads']}, --n-parallel {a['n_parallel']}, seed {a['seed']}; server up in {raw['boot_s']:.0f} s.",
        "",
        "| kind | calls | ok | 4xx | 503 | other 5xx | failed | hang-ups | p50 | p99 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in s["rows"]:
        name = f"**{r['kind']}**" if r["kind"] == "all" else r["kind"]
        lines.append(
            f"| {name} | {r['count']} | {r['ok']} | {r['4xx']} | {r['503']} | {r['5xx']} | {r['failed']} | {r['hangup']} "
            f"| {fmt_s(r['p50'])} | {fmt_s(r['p99'])} |"
        )
    rss = s["rss"]
    calls = s["rows"][-1]["count"]
    lines += [
        "",
        f"{calls} calls, {calls / raw['load_s']:.1f} per second. Latency: call to last byte, ok calls only. "
        f"Hang-ups: {s['rows'][-1]['hangup']} by the clients; the chat engine counted "
        f"{raw['idle']['health'].get('cancelled', '?')} cancelled jobs; the access log has "
        f"{sum(c.get('499', 0) for c in raw['log']['statuses'].values())} 499s (a stream already answering logs its 200).",
        "",
        "| RSS | MiB |",
        "|---|--:|",
        f"| after start (one chat + one embedding call) | {rss['start']:.0f} |",
        f"| end of warm-up (median of the last {RSS_WINDOW:.0f} s before {rss['warm_t']:.0f} s) | {rss['warm']:.0f} |"
        if rss["warm"]
        else "| end of warm-up | - |",
        f"| end of load (median of the last {RSS_WINDOW:.0f} s) | {rss['end']:.0f} |" if rss["end"] else "| end of load | - |",
        f"| idle, after the check | {rss['idle']:.0f} |" if rss["idle"] else "| idle | - |",
        f"| peak sample | {rss['peak']:.0f} |",
        f"| growth, warm-up to end | {rss['growth']:+.1%} |" if rss["growth"] is not None else "| growth | - |",
        f"| trend after warm-up (least squares) | {rss['slope']:+.2f} MiB/min |" if rss["slope"] is not None else "",
        "",
        "| criterion | measured | |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {measured} | {'pass' if ok else '**FAIL**'} |" for name, measured, ok in s["criteria"]]
    log = raw["log"]
    lines += ["", "Server access log, statuses per route (499: the client left):", ""]
    lines += [f"- `{route}`: " + ", ".join(f"{st} x{n}" for st, n in c.items()) for route, c in log["statuses"].items()]
    if log["warnings"]:
        lines += ["", "Server warnings (most frequent):", ""]
        lines += [f"- {n} x {msg}" for msg, n in log["warnings"].items()]
    for title, items in s["listed"].items():
        if items:
            lines += ["", f"{title} ({len(items)}; up to 20):", ""]
            lines += [f"- {r.kind} [{r.variant}] at {r.start:.0f}s: {r.status} {r.detail}" for r in items[:20]]
    if log["errors"]:
        lines += ["", f"Server error lines ({len(log['errors'])}; up to 10):", ""]
        for e in log["errors"][:10]:
            exc = (e.get("exception") or "").strip().splitlines()
            lines.append(f"- {e['time']} {e['logger']}: {e['message']}" + (f" ({exc[-1]})" if exc else ""))
    return "\n".join(line for line in lines if line is not None)


def chart(raw: dict[str, Any], s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    load_s = raw["load_s"]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    ts = [t / 60 for t, _ in raw["rss"]]
    ax1.plot(ts, [kib / 1024 for _, kib in raw["rss"]], "-", lw=1.2, label="server RSS (VmRSS)")
    rss = s["rss"]
    for t, value, label in ((rss["warm_t"], rss["warm"], "warm-up end"), (load_s, rss["end"], "end of load")):
        if value:
            ax1.plot([max(0.0, t - RSS_WINDOW) / 60, t / 60], [value, value], "k-", lw=3, alpha=0.6)
            ax1.annotate(f"{label}: {value:.0f} MiB", (t / 60, value), textcoords="offset points", xytext=(-60, 8), fontsize=8)
    ax1.axvspan(0, rss["warm_t"] / 60, color="0.9", label="warm-up")
    ax1.set_ylabel("MiB")
    growth = f"{rss['growth']:+.1%}" if rss["growth"] is not None else "?"
    ax1.set_title(f"server RSS: growth after warm-up {growth}", fontsize=9)
    ax1.legend(fontsize=8, loc="lower right")
    ax1.grid(True, alpha=0.3)

    width = 10.0
    bins = int(load_s // width) + 1
    counts = {o: [0] * bins for o in OUTCOMES}
    for r in raw["results"]:
        b = min(bins - 1, int((r["start"] + r["latency"]) // width))
        counts[r["outcome"]][b] += 1
    xs = [(i + 0.5) * width / 60 for i in range(bins)]
    bottom = [0.0] * bins
    colours = {"ok": "tab:green", "hangup": "tab:blue", "4xx": "tab:orange", "503": "gold", "5xx": "tab:red", "failed": "black"}
    for o in ("ok", "hangup", "4xx", "503", "5xx", "failed"):
        ys = [n / width for n in counts[o]]
        if any(ys):
            ax2.bar(xs, ys, width=width / 60 * 0.95, bottom=bottom, color=colours[o], label=o)
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax2.set_ylabel(f"calls ended per s ({width:.0f} s bins)")
    ax2.legend(fontsize=8, ncol=6, loc="lower right")
    ax2.grid(True, alpha=0.3)

    ht = [t / 60 for t, _ in raw["health"]]
    for key, label in (
        ("running", "chat running_sequences"),
        ("queued", "chat queued_requests"),
        ("emb_active", "embedding active_requests"),
    ):
        ax3.plot(ht, [h[key] for _, h in raw["health"]], "-", lw=1, label=label)
    ax3.axvline(load_s / 60, color="k", ls="--", lw=1, label="clients stop")
    ax3.set_ylabel("/health counters")
    ax3.set_xlabel("minutes since the load started")
    ax3.legend(fontsize=8, ncol=4, loc="upper left")
    ax3.grid(True, alpha=0.3)
    f, a = raw["machine"], raw["args"]
    fig.suptitle(
        f"bench/soak.py: {a['clients']} clients, {load_s / 60:.1f} min; {f['date']}, {f['cpu']}, {f['cores']} cores; "
        f"--threads {a['threads']} --n-parallel {a['n_parallel']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
