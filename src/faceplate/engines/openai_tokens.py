"""OpenAI's token ids as text: what a token-array ``input`` means to a client written for OpenAI.

LangChain's ``OpenAIEmbeddings()`` (and others) tokenize text themselves with tiktoken's
``cl100k_base`` and send the ids. Read as ids of the served model's own vocabulary they
would embed different text, silently. So by default an embedding model reads token arrays
as ``cl100k_base`` ids, decodes them to text offline (the table ships inside the
``bpe-openai`` package; no download) and embeds that text. An operator whose clients send
the model's own token ids declares ``token_ids = "model"`` for it.
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from faceplate.errors import InvalidRequest

ENCODING = "cl100k_base"  # OpenAI's embedding models' encoding (text-embedding-3-*, ada-002)


@cache
def _pieces() -> tuple[bytes, ...]:
    """Each token's bytes by id, read once from the tiktoken-format table (base64 bytes, rank)."""
    spec = importlib.util.find_spec("bpe_openai")  # found, not imported: its __init__ does work we do not need
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the bpe-openai package (OpenAI's token tables) is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    raw = gzip.decompress((folder / "data" / f"{ENCODING}.tiktoken.gz").read_bytes())
    ranked = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranked[int(rank)] = base64.b64decode(token)
    return tuple(ranked[i] for i in range(len(ranked)))


def decode(ids: Sequence[int], index: int) -> str:
    """``cl100k_base`` ids as text; an id outside its ordinary tokens is a 400 naming ``input``."""
    pieces = _pieces()
    try:
        data = b"".join(pieces[i] if i >= 0 else _bad(i, len(pieces), index) for i in ids)
    except IndexError:
        raise _out_of_range(max(ids), len(pieces), index) from None
    return data.decode("utf-8", errors="replace")


def _bad(token: int, size: int, index: int) -> bytes:
    raise _out_of_range(token, size, index)


def _out_of_range(token: int, size: int, index: int) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid 'input[{index}]': token id {token} is not an ordinary {ENCODING} token (0 to {size - 1}). "
        f"Token arrays are read as OpenAI's {ENCODING} ids for this model.",
        param="input",
        code="invalid_value",
    )
