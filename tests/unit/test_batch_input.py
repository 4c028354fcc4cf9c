"""Batch input validation: every error code with its line and param, streaming, and the byte-level edge cases."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from faceplate.protocol.batches import MAX_BATCH_REQUESTS, MAX_EMBEDDING_INPUTS
from faceplate.service import batch_input
from faceplate.service.batch_input import NOT_JSON, BatchError, BatchLine, Validated, embedding_inputs, validate_input

CHAT = "/v1/chat/completions"
EMB = "/v1/embeddings"


def req(custom_id: str = "r1", *, url: str = CHAT, model: Any = "m", **body: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], **body}
    if model is not None:
        b["model"] = model
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": b}


def jsonl(*objs: Any) -> list[bytes]:
    return [(o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objs]


def only_error(result: Validated) -> BatchError:
    assert result.lines == []
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


def codes(result: Validated) -> list[tuple[str, int | None, str | None]]:
    return [(e.code, e.line, e.param) for e in result.errors]


# ----------------------------------------------------------------------------- what passes


def test_valid_file_gives_lines_and_model() -> None:
    result = validate_input(jsonl(req("a"), req("b", temperature=0.5)), CHAT)
    assert result.errors == []
    assert result.model == "m"
    assert result.lines == [
        BatchLine(line=1, custom_id="a", method="POST", url=CHAT, body=req("a")["body"]),
        BatchLine(line=2, custom_id="b", method="POST", url=CHAT, body=req("b", temperature=0.5)["body"]),
    ]


def test_reads_an_open_binary_file() -> None:
    f = io.BytesIO(b"".join(jsonl(req("a"), req("b"))))
    result = validate_input(f, CHAT)
    assert [line.custom_id for line in result.lines] == ["a", "b"]


def test_blank_lines_are_skipped_but_keep_line_numbers() -> None:
    raw = [b"\n", json.dumps(req("a")).encode() + b"\n", b"   \t\n", b"\n", json.dumps(req("a")).encode() + b"\n", b""]
    result = validate_input(raw, CHAT)
    assert codes(result) == [("duplicate_custom_id", 5, "custom_id")]
    assert "line 2" in result.errors[0].message


def test_trailing_newline_and_no_trailing_newline() -> None:
    with_nl = io.BytesIO(json.dumps(req("a")).encode() + b"\n" + json.dumps(req("b")).encode() + b"\n")
    without = io.BytesIO(json.dumps(req("a")).encode() + b"\n" + json.dumps(req("b")).encode())
    assert [x.line for x in validate_input(with_nl, CHAT).lines] == [1, 2]
    assert [x.line for x in validate_input(without, CHAT).lines] == [1, 2]


def test_crlf_line_endings() -> None:
    data = b"\r\n".join(json.dumps(req(c)).encode() for c in "abc") + b"\r\n\r\n"
    result = validate_input(io.BytesIO(data), CHAT)
    assert result.errors == []
    assert [x.custom_id for x in result.lines] == ["a", "b", "c"]


def test_utf8_bom_on_first_line_is_accepted() -> None:
    raw = jsonl(req("a"), req("b"))
    raw[0] = b"\xef\xbb\xbf" + raw[0]
    result = validate_input(raw, CHAT)
    assert result.errors == []
    assert result.lines[0].custom_id == "a"


def test_utf8_bom_on_a_later_line_is_invalid() -> None:
    raw = jsonl(req("a"), req("b"))
    raw[1] = b"\xef\xbb\xbf" + raw[1]
    assert codes(validate_input(raw, CHAT)) == [("invalid_json_line", 2, None)]


def test_bom_alone_on_the_first_line_is_blank() -> None:
    result = validate_input([b"\xef\xbb\xbf\r\n", *jsonl(req("a"))], CHAT)
    assert result.errors == [] and result.lines[0].line == 2
    assert codes(validate_input([b"\xef\xbb\xbf"], CHAT)) == [("empty_file", None, None)]


def test_stream_true_passes_validation() -> None:
    result = validate_input(jsonl(req("a", stream=True)), CHAT)
    assert result.errors == []
    assert result.lines[0].body["stream"] is True


def test_invalid_bodies_pass_validation() -> None:
    # Not a valid chat request (no messages, a wrong type): that line's own 400 later, not the batch's.
    bad = {"custom_id": "a", "method": "POST", "url": CHAT, "body": {"model": "m", "temperature": "hot"}}
    result = validate_input(jsonl(bad), CHAT)
    assert result.errors == []
    assert result.lines[0].body == {"model": "m", "temperature": "hot"}


def test_unknown_envelope_fields_are_ignored() -> None:
    result = validate_input(jsonl({**req("a"), "extra": 1}), CHAT)
    assert result.errors == [] and len(result.lines) == 1


def test_non_ascii_text_survives() -> None:
    result = validate_input(jsonl(req("é", messages=[{"role": "user", "content": "日本\u2028"}])), CHAT)
    assert result.lines[0].custom_id == "é"
    assert result.lines[0].body["messages"][0]["content"] == "日本\u2028"


# ----------------------------------------------------------------------------- empty_file


@pytest.mark.parametrize("raw", [[], [b""], [b"\n"], [b"\n", b"  \r\n", b"\t"]])
def test_empty_file(raw: list[bytes]) -> None:
    result = validate_input(raw, CHAT)
    err = only_error(result)
    assert (err.code, err.line, err.param) == ("empty_file", None, None)
    assert result.model is None


# ----------------------------------------------------------------------------- invalid_json_line


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"custom_id": "a",',
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","x":NaN}}',
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","x":Infinity}}',
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","x":"\\ud800"}}',
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","x":"\xed\xa0\x80"}}',
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","x":"\xff"}}',
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","x":"\xc3"}}',
        b"[" * 100_000 + b"]" * 100_000,
        '{"custom_id":"a"}'.encode("utf-16-le"),
        '{"custom_id":"a"}'.encode("utf-16"),
        b'{"a":1}{"b":2}',
        b'{"a":1}\x00',
    ],
    ids=[
        "text",
        "truncated",
        "nan",
        "infinity",
        "escaped-surrogate",
        "utf8-surrogate",
        "invalid-utf8",
        "truncated-utf8",
        "deep",
        "utf16",
        "utf16-bom",
        "two-objects",
        "nul",
    ],
)
def test_not_json(raw: bytes) -> None:
    result = validate_input([*jsonl(req("ok")), raw + b"\n"], CHAT)
    err = only_error(result)
    assert (err.code, err.line, err.param, err.message) == ("invalid_json_line", 2, None, NOT_JSON)


@pytest.mark.parametrize(
    ("line", "param"),
    [
        ([1, 2], None),
        ('"a string"', None),
        (7, None),
        ({"method": "POST", "url": CHAT, "body": {"model": "m"}}, "custom_id"),
        ({"custom_id": 5, "method": "POST", "url": CHAT, "body": {"model": "m"}}, "custom_id"),
        ({"custom_id": None, "method": "POST", "url": CHAT, "body": {"model": "m"}}, "custom_id"),
        ({"custom_id": "", "method": "POST", "url": CHAT, "body": {"model": "m"}}, "custom_id"),
        ({"custom_id": "a", "url": CHAT, "body": {"model": "m"}}, "method"),
        ({"custom_id": "a", "method": "GET", "url": CHAT, "body": {"model": "m"}}, "method"),
        ({"custom_id": "a", "method": "post", "url": CHAT, "body": {"model": "m"}}, "method"),
        ({"custom_id": "a", "method": 1, "url": CHAT, "body": {"model": "m"}}, "method"),
        ({"custom_id": "a", "method": "POST", "body": {"model": "m"}}, "url"),
        ({"custom_id": "a", "method": "POST", "url": None, "body": {"model": "m"}}, "url"),
        ({"custom_id": "a", "method": "POST", "url": ["/v1/chat/completions"], "body": {"model": "m"}}, "url"),
        ({"custom_id": "a", "method": "POST", "url": CHAT}, "body"),
        ({"custom_id": "a", "method": "POST", "url": CHAT, "body": None}, "body"),
        ({"custom_id": "a", "method": "POST", "url": CHAT, "body": "{}"}, "body"),
        ({"custom_id": "a", "method": "POST", "url": CHAT, "body": [{"model": "m"}]}, "body"),
    ],
)
def test_bad_envelope(line: Any, param: str | None) -> None:
    raw = line.encode() if isinstance(line, str) else json.dumps(line).encode()
    result = validate_input([b"\n", raw], CHAT)
    err = only_error(result)
    assert (err.code, err.line, err.param) == ("invalid_json_line", 2, param)
    if param:
        assert f"'{param}'" in err.message


def test_one_error_per_bad_envelope_line() -> None:
    result = validate_input(jsonl({"custom_id": 1, "method": "GET"}), CHAT)
    assert codes(result) == [("invalid_json_line", 1, "custom_id")]


def test_bad_line_does_not_claim_its_custom_id() -> None:
    bad = {"custom_id": "a", "method": "GET", "url": CHAT, "body": {"model": "m"}}
    assert codes(validate_input(jsonl(bad, req("a")), CHAT)) == [("invalid_json_line", 1, "method")]


# ----------------------------------------------------------------------------- duplicate_custom_id


def test_duplicate_custom_id_names_the_second_line() -> None:
    result = validate_input(jsonl(req("a"), req("b"), req("a"), req("a")), CHAT)
    assert codes(result) == [("duplicate_custom_id", 3, "custom_id"), ("duplicate_custom_id", 4, "custom_id")]
    assert "'a'" in result.errors[0].message and "line 1" in result.errors[0].message
    assert result.lines == []


def test_custom_ids_are_compared_exactly() -> None:
    result = validate_input(jsonl(req("a"), req("A"), req("a ")), CHAT)
    assert result.errors == [] and len(result.lines) == 3


# ----------------------------------------------------------------------------- url_mismatch


@pytest.mark.parametrize("url", ["/v1/embeddings", "/v1/chat/completions/", "v1/chat/completions", "/chat/completions", ""])
def test_url_mismatch(url: str) -> None:
    result = validate_input(jsonl(req("a"), req("b", url=url)), CHAT)
    err = only_error(result)
    assert (err.code, err.line, err.param) == ("url_mismatch", 2, "url")
    assert CHAT in err.message


def test_each_endpoint_accepts_its_own_url() -> None:
    for endpoint in ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions"):
        assert validate_input(jsonl(req("a", url=endpoint)), endpoint).errors == []


# ----------------------------------------------------------------------------- model_mismatch


def test_model_mismatch_names_both_models() -> None:
    result = validate_input(jsonl(req("a", model="m1"), req("b", model="m1"), req("c", model="m2")), CHAT)
    err = only_error(result)
    assert (err.code, err.line, err.param) == ("model_mismatch", 3, "body.model")
    assert "'m2'" in err.message and "'m1'" in err.message
    assert result.model == "m1"


@pytest.mark.parametrize("model", [None, 5, ["m"], {"id": "m"}])
def test_line_without_a_string_model_is_model_mismatch(model: Any) -> None:
    line = req("b")
    if model is None:
        del line["body"]["model"]
    else:
        line["body"]["model"] = model
    result = validate_input(jsonl(req("a"), line), CHAT)
    err = only_error(result)
    assert (err.code, err.line, err.param) == ("model_mismatch", 2, "body.model")


def test_first_line_without_a_model_does_not_set_it() -> None:
    result = validate_input(jsonl(req("a", model=None), req("b", model="x"), req("c", model="x")), CHAT)
    assert codes(result) == [("model_mismatch", 1, "body.model")]
    assert result.model == "x"


def test_one_line_can_carry_several_errors() -> None:
    result = validate_input(jsonl(req("a"), req("a", url=EMB, model="other")), CHAT)
    assert codes(result) == [
        ("duplicate_custom_id", 2, "custom_id"),
        ("url_mismatch", 2, "url"),
        ("model_mismatch", 2, "body.model"),
    ]


# ----------------------------------------------------------------------------- too_many_tasks


def test_too_many_tasks_at_the_limit_plus_one() -> None:
    assert validate_input(jsonl(*(req(str(i)) for i in range(3))), CHAT, max_requests=3).errors == []
    result = validate_input([b"\n", *jsonl(*(req(str(i)) for i in range(4)))], CHAT, max_requests=3)
    err = only_error(result)
    assert (err.code, err.line, err.param) == ("too_many_tasks", 5, None)
    assert "3" in err.message


def counted(source: Iterator[bytes], seen: list[int]) -> Iterator[bytes]:
    for raw in source:
        seen[0] += 1
        yield raw


def test_too_many_tasks_streams_and_stops_reading() -> None:
    # Validation must stop at line MAX_BATCH_REQUESTS + 1, having read no further (a bounded file,
    # so a regression fails rather than hangs).
    lines = (
        b'{"custom_id":"%d","method":"POST","url":"/v1/embeddings","body":{"model":"m","input":"x"}}' % i
        for i in range(1, MAX_BATCH_REQUESTS + 1001)
    )
    seen = [0]
    result = validate_input(counted(lines, seen), EMB)
    assert seen[0] == MAX_BATCH_REQUESTS + 1
    err = only_error(result)  # and the 50,000 lines built so far were dropped
    assert (err.code, err.line, err.param) == ("too_many_tasks", MAX_BATCH_REQUESTS + 1, None)


def test_too_many_tasks_is_checked_before_the_line_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = [0]
    real = batch_input.parse_json

    def spy(raw: bytes) -> Any:
        parsed[0] += 1
        return real(raw)

    monkeypatch.setattr(batch_input, "parse_json", spy)
    result = validate_input(jsonl(*(req(str(i)) for i in range(10))), CHAT, max_requests=4)
    assert codes(result) == [("too_many_tasks", 5, None)]
    assert parsed[0] == 4


def test_no_batch_lines_are_built_after_the_first_error(monkeypatch: pytest.MonkeyPatch) -> None:
    built = [0]
    real = batch_input.BatchLine

    def spy(**kw: Any) -> BatchLine:
        built[0] += 1
        return real(**kw)

    monkeypatch.setattr(batch_input, "BatchLine", spy)
    lines = [req(str(i)) for i in range(1000)]
    lines[2]["url"] = EMB
    result = validate_input(jsonl(*lines), CHAT)
    assert codes(result) == [("url_mismatch", 3, "url")]
    assert built[0] == 2  # lines 1 and 2 only


def test_embedding_inputs_limit() -> None:
    def emb(cid: str, value: Any) -> dict[str, Any]:
        return {"custom_id": cid, "method": "POST", "url": EMB, "body": {"model": "e", "input": value}}

    ok = validate_input(jsonl(emb("a", ["x", "y"]), emb("b", "z"), emb("c", [1, 2, 3, 4, 5])), EMB, max_embedding_inputs=4)
    assert ok.errors == [] and ok.model == "e"
    result = validate_input(
        jsonl(emb("a", ["x", "y"]), emb("b", [[1], [2]]), emb("c", "z"), emb("d", "w")), EMB, max_embedding_inputs=4
    )
    err = only_error(result)
    assert (err.code, err.line, err.param) == ("too_many_tasks", 3, "body.input")
    assert "4" in err.message


def test_embedding_inputs_limit_default_and_other_endpoints() -> None:
    big = {"custom_id": "a", "method": "POST", "url": EMB, "body": {"model": "e", "input": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}}
    assert codes(validate_input(jsonl(big), EMB)) == [("too_many_tasks", 1, "body.input")]
    exact = {**big, "body": {"model": "e", "input": ["x"] * MAX_EMBEDDING_INPUTS}}
    assert validate_input(jsonl(exact), EMB).errors == []
    # Only embeddings batches count inputs.
    other = {**big, "url": "/v1/completions", "body": {"model": "e", "prompt": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}}
    assert validate_input(jsonl(other), "/v1/completions").errors == []


@pytest.mark.parametrize(
    ("value", "count"),
    [("x", 1), ("", 1), (["a", "b", "c"], 3), ([1, 2, 3], 1), ([[1], [2, 3]], 2), ([], 0), (None, 0), (5, 0), ({"a": 1}, 0)],
)
def test_embedding_input_count(value: Any, count: int) -> None:
    assert embedding_inputs({"input": value}) == count
    assert embedding_inputs({}) == 0


# ----------------------------------------------------------------------------- max_errors and mixing


def test_max_errors_stops_collecting_and_reading() -> None:
    seen = [0]
    result = validate_input(counted(iter([b"bad\n"] * 50), seen), CHAT, max_errors=5)
    assert codes(result) == [("invalid_json_line", n, None) for n in range(1, 6)]
    assert seen[0] == 5


def test_default_max_errors_is_100() -> None:
    result = validate_input([b"bad\n"] * 150, CHAT)
    assert len(result.errors) == 100 and result.errors[-1].line == 100


def test_errors_keep_file_order_across_codes() -> None:
    result = validate_input(jsonl(req("a"), b"nope", req("a"), req("c", url=EMB), req("d", model="z"), {"custom_id": "e"}), CHAT)
    assert codes(result) == [
        ("invalid_json_line", 2, None),
        ("duplicate_custom_id", 3, "custom_id"),
        ("url_mismatch", 4, "url"),
        ("model_mismatch", 5, "body.model"),
        ("invalid_json_line", 6, "method"),
    ]
    assert result.lines == []


def test_too_many_tasks_after_other_errors() -> None:
    result = validate_input(jsonl(b"x", req("a"), req("b"), req("c")), CHAT, max_requests=2)
    assert codes(result) == [("invalid_json_line", 1, None), ("too_many_tasks", 3, None)]
