"""faceplate check's pure parts: the report and exit status, check selection, URLs, evidence."""

from __future__ import annotations

import json

import pytest

from faceplate.check import report
from faceplate.check.checks import all_checks
from faceplate.check.http import Reply, base_v1, model_ids, trim
from faceplate.check.runner import Result, select

RESULTS = [
    Result("models.list", "GET /v1/models is a ListModelsResponse", "pass", "2 models listed"),
    Result("chat.n", "n=2 gives two choices", "fail", "n=2 refused: HTTP 400", "sent POST /chat/completions {} -> got 400 {}"),
    Result("auth.missing_key", "no key is 401", "skip", "no --key given"),
]


def test_table_rows_failures_and_summary() -> None:
    text = report.table(RESULTS, target="http://x/v1")
    lines = text.splitlines()
    assert lines[0] == "faceplate check http://x/v1"
    assert any(line.split()[:2] == ["chat.n", "FAIL"] for line in lines)
    assert any(line.split()[:2] == ["auth.missing_key", "SKIP"] for line in lines)
    assert "Failures:" in text and "sent POST /chat/completions" in text
    assert lines[-1] == "1 passed, 1 failed, 1 skipped"


def test_json_and_exit_status() -> None:
    doc = json.loads(report.as_json(RESULTS, target="http://x/v1"))
    assert doc["summary"] == {"pass": 1, "fail": 1, "skip": 1} and doc["ok"] is False
    assert doc["results"][1] == {
        "name": "chat.n",
        "rule": "n=2 gives two choices",
        "status": "fail",
        "reason": "n=2 refused: HTTP 400",
        "evidence": "sent POST /chat/completions {} -> got 400 {}",
    }
    assert report.exit_status(RESULTS) == report.EXIT_FAILED == 1
    assert report.exit_status([RESULTS[0], RESULTS[2]]) == report.EXIT_OK == 0
    assert report.EXIT_UNREACHABLE == 2


def test_check_names_are_unique_and_ruled() -> None:
    checks = all_checks()
    names = [c.name for c in checks]
    assert len(names) == len(set(names)) >= 29
    assert all(c.rule and "\n" not in c.rule for c in checks)


def test_select_by_name_or_group() -> None:
    checks = all_checks()
    assert [c.name for c in select(checks, ["chat.n"])] == ["chat.n"]
    stream = [c.name for c in select(checks, ["chat.stream"])]
    assert stream and all(n.startswith("chat.stream.") for n in stream)
    assert "chat.schema" not in stream  # a prefix matches whole dotted parts only
    assert select(checks, None) == list(checks)
    with pytest.raises(ValueError, match="no check named chat.nope"):
        select(checks, ["chat.n", "chat.nope"])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:1", "http://h:1/v1"),
        ("http://h:1/", "http://h:1/v1"),
        ("http://h:1/v1", "http://h:1/v1"),
        ("https://h/v1/", "https://h/v1"),
        (" http://h/openai ", "http://h/openai/v1"),
    ],
)
def test_base_v1(given: str, expected: str) -> None:
    assert base_v1(given) == expected


def test_base_v1_refuses_other_schemes() -> None:
    with pytest.raises(ValueError):
        base_v1("127.0.0.1:8000")


def test_evidence_is_trimmed_and_one_line() -> None:
    reply = Reply("POST", "/chat/completions", {"model": "m", "x": "y" * 1000}, 400, "application/json", "{\n" + "e" * 1000 + "}")
    text = reply.evidence()
    assert "\n" not in text and len(text) < 600
    assert text.startswith("sent POST /chat/completions {") and "-> got 400 {" in text
    assert trim("a\n  b") == "a b" and trim("x" * 10, 4) == "xxxx… (+6 chars)"


def test_model_ids() -> None:
    good = Reply("GET", "/models", None, 200, "application/json", '{"data": [{"id": "a"}, {"id": 3}, {"id": "b"}]}')
    assert model_ids(good) == ("a", "b")
    assert model_ids(Reply("GET", "/models", None, 401, "", '{"data": [{"id": "a"}]}')) == ()
    assert model_ids(Reply("GET", "/models", None, 200, "", "not json")) == ()
