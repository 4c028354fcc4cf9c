"""Batch invariance of seeded output, and what ``--deterministic`` costs: llama.cpp's CPU backend.

    .venv/bin/python bench/determinism.py [--quick] [--threads 2] [--parts 1,2,3] [--model FILE]

Seeded llama.cpp output changes with the batch shape because CPU flash attention picks its kernel
by the shape of the sub-batch a token lands in: a sequence with >= 64 tokens in a sub-batch (a
prompt prefilled in one piece) takes a tiled kernel, fewer tokens a row kernel, and a lone decode
token past 256 KV cells a split-KV kernel when it runs on more than one thread; they round
differently. ``Scheduler(deterministic=True)`` (``faceplate serve --deterministic``; batch.py)
prefills in chunks of at most 63 tokens and runs the steps that hold a token at position >= 256
with one-token sub-batches on one thread, so every row takes the row kernel.

- Part 1 (determinism_kernels.py): the cause, at kernel level. One condition changed at a time,
  the same sequence's logits row compared bitwise (low-level API, no scheduler).
- Part 2 (determinism_scheduler.py): src/'s real Scheduler, default vs deterministic: the same
  seeded request alone, again from its cached prefix, and among 3 neighbours; identical or not.
- Part 3 (determinism_scheduler.py): tokens/s of the real Scheduler in both modes, for decode and
  prefill shapes, interleaved runs, median of repeats.

The tables go to stdout and bench/out/determinism.md (determinism-quick.md for --quick); the full
run also draws bench/determinism.png (tok/s per case, both modes, annotated with the ratio).
n_threads >= 2 is needed to see the split-KV effect (the server default is the CPU count). The
bundled model's matmuls are batch invariant; other quantizations may not be: check with --model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import determinism_kernels as kernels  # noqa: E402
from common import BENCH_DIR, OUT_DIR, model_path  # noqa: E402
from determinism_scheduler import MODES, CostRow, IdentityRow, cost, identity  # noqa: E402

from faceplate.engines.llamacpp.model import LlamaModel  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def kernel_table(rows: list[tuple[str, str, bool, float]]) -> str:
    lines = ["| group | condition | identical | max diff |", "|---|---|---|---|"]
    lines += [f"| {g} | {name} | {'yes' if same else 'no'} | {diff:.3g} |" for g, name, same, diff in rows]
    return "\n".join(lines)


def identity_table(rows: list[IdentityRow]) -> str:
    lines = [
        "| seeded request (temperature 0.9) | alone vs | default: identical | deterministic: identical |",
        "|---|---|---|---|",
    ]
    for r in rows:
        cells = [("yes" if r.same[m] else f"**no** ({r.where[m]})") for m, _ in MODES]
        lines.append(f"| {r.target} | {r.compared} | {' | '.join(cells)} |")
    return "\n".join(lines)


def cost_table(rows: list[CostRow]) -> str:
    lines = ["| case | default tok/s | deterministic tok/s | ratio |", "|---|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.rates['default']:.1f} | {r.rates['deterministic']:.1f} | {r.ratio:.2f} |" for r in rows]
    return "\n".join(lines)


def chart(rows: list[CostRow], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    xs = range(len(rows))
    w = 0.38
    for k, (mode, _) in enumerate(MODES):
        ax.bar([x + (k - 0.5) * w for x in xs], [r.rates[mode] for r in rows], w, label=mode)
    for x, r in zip(xs, rows, strict=True):
        top = max(r.rates.values())
        ax.annotate(f"x{r.ratio:.2f}", (x, top), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=9)
    ax.set_xticks(list(xs), [textwrap.fill(r.name, 22) for r in rows], fontsize=8)
    ax.set_ylabel("tokens/s (median)")
    ax.set_ylim(0, max(max(r.rates.values()) for r in rows) * 1.15)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class _DropProgressDots(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().strip(" .:") not in ("llama.cpp", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer conditions and repeats, shorter answers")
    ap.add_argument("--model", help="a GGUF chat model (default: the bundled SmolLM2-135M Q4_1)")
    ap.add_argument("--threads", type=int, default=2, help="n_threads of the context (>= 2 to see split-KV)")
    ap.add_argument("--parts", default="1,2,3", help="1 kernel conditions, 2 Scheduler identity, 3 Scheduler cost")
    args = ap.parse_args()
    logging.getLogger("faceplate.llamacpp").addFilter(_DropProgressDots())
    model = LlamaModel(args.model or str(model_path()))
    parts = {p.strip() for p in args.parts.split(",")}
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    model_name = Path(args.model).name if args.model else model_path().name
    head = f"{date}, {cpu_model()}, {args.threads} threads, {model_name}" + (", --quick" if args.quick else "")
    print(head)
    t0 = time.perf_counter()
    md = [f"# bench/determinism.py\n\n{head}"]
    if "1" in parts:
        kernels.part1(model, args.threads, args.quick)
        md.append("## Part 1: which conditions change the logits row (kernel level)\n\n" + kernel_table(kernels.ROWS))
    same: list[IdentityRow] = identity(model, args.threads, args.quick) if "2" in parts else []
    costs: list[CostRow] = cost(model, args.threads, args.quick) if "3" in parts else []
    model.close()
    elapsed = time.perf_counter() - t0
    if same:
        md.append("## Part 2: src/'s Scheduler, identical output?\n\n" + identity_table(same))
    if costs:
        md.append("## Part 3: src/'s Scheduler, tokens/s\n\n" + cost_table(costs))
    md.append(f"Run time: {elapsed:.0f} s.")
    text = "\n\n".join(md) + "\n"
    print("\n" + text)
    OUT_DIR.mkdir(exist_ok=True)
    out = OUT_DIR / ("determinism-quick.md" if args.quick else "determinism.md")
    out.write_text(text)
    print(f"wrote {out}")
    if costs:
        png = OUT_DIR / "determinism-quick.png" if args.quick else BENCH_DIR / "determinism.png"
        chart(costs, f"src/'s Scheduler, default vs --deterministic: {head}", png)
        print(f"wrote {png}")
    if kernels.ROWS:
        fixed = [r for r in kernels.ROWS if r[0] == "fix"]
        other = [r for r in kernels.ROWS if r[0] != "fix"]
        n_diff, n_same = sum(not r[2] for r in other), sum(r[2] for r in fixed)
        print(f"part 1: {n_diff} of {len(other)} conditions differ; with the fix {n_same} of {len(fixed)} identical")
    if same:
        for mode, _ in MODES:
            print(f"part 2: {mode}: {sum(r.same[mode] for r in same)} of {len(same)} identical")


if __name__ == "__main__":
    main()
