"""The load bench/soak.py puts on the server: its models, key and timeout, the mix of call kinds with
their weights, the outcomes a call can have, and what the calls send (a JSON schema, a tool, cities, words)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from faceplate.config import DEFAULT_CHAT_MODEL_ID, DEFAULT_EMBEDDING_MODEL_ID  # noqa: E402

CHAT = DEFAULT_CHAT_MODEL_ID
EMB = DEFAULT_EMBEDDING_MODEL_ID
KEY = "sk-soak-bench-0123456789abcdef"
AUTH = {"authorization": f"Bearer {KEY}"}
REQUEST_TIMEOUT = 120.0
DIMENSIONS = 384

MIX: list[tuple[str, int]] = [
    ("chat_stream", 14),
    ("chat", 10),
    ("chat_n2", 8),
    ("structured", 8),
    ("tools", 6),
    ("embed_one", 8),
    ("embed_batch", 6),
    ("responses", 6),
    ("responses_stream", 6),
    ("completions", 6),
    ("hangup_stream", 10),
    ("hangup_queued", 8),
    ("invalid", 4),
]
KINDS = [k for k, _ in MIX]
OUTCOMES = ("ok", "4xx", "503", "5xx", "failed", "hangup")

CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "population": {"type": "integer"},
        "coastal": {"type": "boolean"},
    },
    "required": ["city", "population", "coastal"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
CITIES = ["Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Tunis", "Quebec", "Perth", "Tallinn", "Manaus"]
VOCABULARY = """the river market coffee guitar weather city model server request vector search document query token
sentence language mountain harbour lamp bicycle garden letter bread clock apple honey train umbrella school fishing net"""
WORDS = VOCABULARY.split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))).capitalize() + "."
