import pytest

from faceplate.engines.chat_template import ChatTemplate
from faceplate.errors import InvalidRequest


def test_chatml_default_renders_generation_prompt() -> None:
    t = ChatTemplate(None, {})
    out = t.render([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert out == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"


def test_template_cannot_escape_the_sandbox() -> None:
    t = ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})
    with pytest.raises(InvalidRequest):
        t.render([{"role": "user", "content": "x"}])


def test_raise_exception_in_template_is_a_400() -> None:
    t = ChatTemplate("{{ raise_exception('roles must alternate') }}", {})
    with pytest.raises(InvalidRequest, match="roles must alternate") as info:
        t.render([{"role": "user", "content": "x"}])
    assert info.value.param == "messages"


def test_special_tokens_and_tojson() -> None:
    t = ChatTemplate("{{ bos_token }}{{ messages[0] | tojson }}", {"bos_token": "<s>"})
    assert t.render([{"role": "user", "content": "é"}]) == '<s>{"role": "user", "content": "é"}'
