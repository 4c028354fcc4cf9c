"""``instructor``: response_model through the OpenAI client, in TOOLS and JSON_SCHEMA modes.

Not in the dev extra: every instructor release pins ``jiter<0.15`` while the openai SDK this project
installs needs ``jiter>=0.16``, so pip cannot install both. The tests run wherever instructor is importable.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.e2e.clients.conftest import CHAT, KEY
from tests.e2e.clients.models import City
from tests.serverproc import ServerProcess

instructor = pytest.importorskip(
    "instructor",
    reason="instructor is not installable beside the project's openai SDK (instructor pins jiter<0.15; openai needs jiter>=0.16)",
)


@pytest.fixture
def raw(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120) as c:
        yield c


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA"])
def test_create_with_response_model(raw: openai.OpenAI, mode: str) -> None:
    client = instructor.from_openai(raw, mode=getattr(instructor.Mode, mode))
    city = client.chat.completions.create(
        model=CHAT,
        response_model=City,
        messages=[{"role": "user", "content": "Name a city."}],
        max_tokens=64,
        temperature=0,
        max_retries=0,
    )
    assert isinstance(city, City)
