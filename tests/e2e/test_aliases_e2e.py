"""An app written for OpenAI asks for OpenAI's model names: aliases answer, through the official SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.keys_helpers import CHAT, chat_only, sdk
from tests.serverproc import ServerProcess, start_server

KEY = "sk-alias-e2e-0123456789"


@pytest.fixture(scope="module")
def aliased(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        [*chat_only(), "--api-key", KEY, "--alias", f"gpt-4o-mini={CHAT}"], log_dir=tmp_path_factory.mktemp("alias")
    )
    yield srv
    srv.stop()


def test_an_openai_model_name_works_unchanged(aliased: ServerProcess) -> None:
    client = sdk(aliased, KEY)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4)
    assert r.model == "gpt-4o-mini" and r.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, stream=True
        )
    )
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    assert {m.id for m in client.models.list()} == {CHAT, "gpt-4o-mini"}
    model = client.models.retrieve("gpt-4o-mini")
    assert model.id == "gpt-4o-mini" and model.model_extra["capabilities"]["context_length"] > 0  # type: ignore[index]
