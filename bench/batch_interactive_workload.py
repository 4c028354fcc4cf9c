"""What bench/batch_interactive.py runs: the server's API key and configurations, the interactive
clients' prompts and the batch's JSONL."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODEL_ID  # noqa: E402

API_KEY = "sk-bench-batch-interactive-0123456789"

# ---------------------------------------------------------------------------- prompts

QUESTIONS = [
    "Why is the sky blue?",
    "What does a bicycle chain do?",
    "How do bees make honey?",
    "What is a prime number?",
    "Why do leaves change colour in autumn?",
    "How does a compass work?",
    "What is the capital of Italy known for?",
    "Why do we need sleep?",
    "How is bread made?",
    "What causes thunder?",
    "How do fish breathe underwater?",
    "What is a good way to learn a new language?",
    "Why does ice float on water?",
    "How do airplanes stay in the air?",
    "What is recycling good for?",
    "How does a rainbow form?",
    "Why do cats purr?",
    "What is the difference between a lake and a sea?",
    "How does a battery store energy?",
    "Give me three tips for a job interview.",
]

REVIEW_PARTS = (
    ["The blender", "This kettle", "The hiking boots", "My new headphones", "The desk lamp", "This backpack",
     "The coffee grinder", "The phone case", "This tent", "The toaster", "The office chair", "These gloves"],
    ["arrived quickly and", "broke after a week and", "looks great but", "is heavier than expected and",
     "works exactly as described and", "was missing a part and", "feels cheap but", "is very quiet and"],
    ["I would buy it again.", "the support never answered.", "it does the job.", "I returned it.",
     "my family loves it.", "the price was fair.", "the manual is useless.", "it exceeded my hopes."],
)  # fmt: skip


def interactive_prompt(phase: str, client: int, i: int) -> str:
    return f"[{phase} c{client} #{i}] {QUESTIONS[(client * 7 + i) % len(QUESTIONS)]} Answer in two sentences."


def review(i: int) -> str:
    rng = random.Random(4242 + i)
    return " ".join(rng.choice(part) for part in REVIEW_PARTS)


def batch_jsonl(n: int, max_tokens: int, tag: str) -> bytes:
    lines = []
    for i in range(n):
        body = {
            "model": MODEL_ID,
            "messages": [
                {
                    "role": "user",
                    "content": f"[{tag} line {i}] Label this product review as positive, negative or mixed, "
                    f"in one word: {review(i)}",
                }
            ],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        lines.append({"custom_id": f"{tag}-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


# ---------------------------------------------------------------------------- configurations


def config_settings(config: str, n_parallel: int) -> tuple[int, int]:
    """(batch_concurrency, batch_slots) of a configuration."""
    return {
        "default": (2, max(1, n_parallel // 2)),
        "nocap": (n_parallel, n_parallel),
        "wide": (n_parallel, max(1, n_parallel // 2)),
    }[config]
