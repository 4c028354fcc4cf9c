"""The hostile-input corpus (``hostile_cases.CASES``) against the real server process.

Each case must be answered at once with its exact 4xx, as OpenAI's error envelope (checked
against the spec's ErrorResponse, strictly, and parsed as JavaScript would), naming the
expected ``param`` and ``code``. After every case ``/health`` must be ok, and after every
``CHAT_EVERY``-th case and at the end an ordinary chat request must succeed; the server's log
must then hold no unhandled error and no 5xx from the corpus.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests import spec
from tests.e2e.hostile_cases import CASES, Case
from tests.e2e.hostile_helpers import AUTH, assert_healthy, health_ok, server_errors, strict_json
from tests.serverproc import ServerProcess

CASE_SECONDS = 15  # each is refused before any work: a slow answer is a bug of its own (the margin is for loaded CI)
CHAT_EVERY = 10


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.root, timeout=CASE_SECONDS * 3) as client:
        yield client


@pytest.fixture(scope="module")
def sent(server: ServerProcess) -> Iterator[list[str]]:
    """The cases sent so far. Afterwards: a chat request still succeeds, and the server logged no failure meanwhile."""
    start = len(server.log())
    names: list[str] = []
    yield names
    assert_healthy(server)
    failures = server_errors(server.log()[start:])
    assert not failures, "the corpus made the server fail:\n" + "\n".join(failures[:20])


def send(http: httpx.Client, case: Case) -> httpx.Response:
    content = case.content()
    headers = {**AUTH, **({"content-type": "application/json"} if content is not None else {}), **case.headers}
    if case.chunked and content is not None:
        pieces = [content[i : i + 65536] for i in range(0, len(content), 65536)]
        return http.request(case.method, case.path, content=iter(pieces), headers=headers)
    return http.request(case.method, case.path, content=content, headers=headers)


def params() -> list[object]:
    """One test per case, named by it; a case the server is known to get wrong is a strict xfail."""
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        out.append(pytest.param(c, id=c.name, marks=marks))
    return out


def test_the_corpus_is_big_and_named_uniquely() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", params())
def test_a_hostile_request_gets_its_4xx_and_the_server_lives_on(
    server: ServerProcess, http: httpx.Client, sent: list[str], case: Case
) -> None:
    sent.append(case.name)
    started = time.monotonic()
    r = send(http, case)
    took = time.monotonic() - started
    assert r.status_code == case.status, r.text[:500]
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = strict_json(r.text)
    spec.validate_error(body, "strict")
    err = body["error"]
    assert err["type"] == "invalid_request_error", err
    assert (err["param"], err["code"]) == (case.param, case.code), err
    assert took < CASE_SECONDS, f"{case.name} took {took:.1f}s"
    health_ok(server)
    if len(sent) % CHAT_EVERY == 0:
        assert_healthy(server)
