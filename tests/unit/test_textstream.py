from faceplate.engines.base import TokenLogprob
from faceplate.engines.textstream import TextStream


def run(pieces: list[bytes], stop: tuple[str, ...]) -> tuple[list[str], bool]:
    ts = TextStream(stop)
    out: list[str] = []
    for p in pieces:
        e = ts.feed(p)
        out.append(e.text)
        if e.stopped:
            return out, True
    out.append(ts.flush().text)
    return out, False


def test_stop_split_across_tokens_is_never_emitted() -> None:
    out, stopped = run([b"Hello ", b"wo", b"r", b"ld", b"!"], ("world",))
    assert stopped and "".join(out) == "Hello "
    assert all("w" not in o for o in out)


def test_partial_stop_prefix_released_when_it_diverges() -> None:
    out, stopped = run([b"a wo", b"nder"], ("world",))
    assert not stopped and "".join(out) == "a wonder"
    assert out[0] == "a "  # "wo" held back while it could still become "world"


def test_earliest_of_several_stops_wins() -> None:
    out, stopped = run([b"x END y STOP"], ("STOP", "END"))
    assert stopped and "".join(out) == "x "


def test_multibyte_utf8_never_split() -> None:
    data = "héllo 日本 🙂".encode()
    out, _ = run([bytes([b]) for b in data], ())
    assert "".join(out) == "héllo 日本 🙂"
    assert all("\ufffd" not in o for o in out)


def test_incomplete_character_at_end_becomes_replacement() -> None:
    out, _ = run([b"ok", "日".encode()[:2]], ())
    assert "".join(out) == "ok\ufffd"


def test_logprobs_travel_with_their_text() -> None:
    ts = TextStream(("zz",))
    lp = TokenLogprob("a", -0.1, (97,))
    e = ts.feed(b"a", lp)
    assert e.text == "a" and e.logprobs == [lp]
    e = ts.feed(b"z", TokenLogprob("z", -0.2, (122,)))
    assert e.text == "" and e.logprobs == []
    e = ts.flush()
    assert e.text == "z" and len(e.logprobs) == 1
