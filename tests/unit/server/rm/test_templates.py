from __future__ import annotations

import copy
import functools
from typing import Any

import pytest

from acecoder.models.templates import (
    CHATML,
    LLAMA3,
    ChatFormat,
    format_from_tokenizer,
    split_query,
)


@functools.cache
def _load(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.fixture
def smol(smol_tokenizer_dir: str) -> Any:
    """The SmolLM2 tokenizer (ChatML with a default system prompt), shared: do not mutate."""
    return _load(smol_tokenizer_dir)


def _with_template(tok: Any, template: str | None) -> Any:
    """A copy of `tok` with another chat template, leaving the shared one intact."""
    tok = copy.deepcopy(tok)
    tok.chat_template = template
    return tok


def _render(tok: Any, messages: list[dict[str, str]], *, generation: bool = True) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


# Llama-3 Instruct's shape: BOS, an injected system turn, `| trim` on contents.
LLAMA3_TEMPLATE = (
    "{{- '<|begin_of_text|>' -}}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: December 2023"
    "<|eot_id|>' -}}"
    "{%- endif -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}"
    "{%- endif -%}"
)

# Mistral-7B-Instruct-v0.1's shape: no generation prompt at all, BOS once, </s> ends answers.
MISTRAL_TEMPLATE = (
    "{{ '<s>' }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + '</s>' }}{% endif %}"
    "{% endfor %}"
)

# Zephyr's shape: the template's own line breaks end every turn with a newline.
ZEPHYR_TEMPLATE = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + '</s>' }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + '</s>' }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""


PAIRS = [
    pytest.param("Write add(a, b).", "```python\ndef add(a, b):\n    return a + b\n```", id="code"),
    pytest.param("Fix this:\n```py\nprint(1\n```\nThanks.", "Sure.\n\n```py\nprint(1)\n```\n",
                 id="multiline-trailing-newline"),
    pytest.param("Say nothing.", "", id="empty-response"),
    pytest.param("The user asked: user?", "user\nassistant\nuser: hi\n", id="role-words"),
    pytest.param("Unicode: ünïcødé 你好 🚀", "Antwort → ✓ 数字\n\n\tindented  ", id="unicode"),
    pytest.param("  padded question  ", "  padded answer", id="edge-spaces"),
    pytest.param(
        "Build a ChatML prompt.",
        'p = "<|im_start|>user\n" + q + "<|im_end|>\n<|im_start|>assistant\n"',
        id="response-quotes-markers",
    ),
]


def test_derives_chatml_from_smol_without_its_default_system_prompt(
    smol: Any, smol_tokenizer_dir: str
) -> None:
    assert "You are a helpful AI assistant" in _render(smol, [_user("q")])
    fmt = format_from_tokenizer(smol)
    assert (fmt.user_prefix, fmt.user_suffix, fmt.assistant_prefix, fmt.assistant_suffix) == (
        CHATML.user_prefix, CHATML.user_suffix, CHATML.assistant_prefix, CHATML.assistant_suffix)
    assert fmt.stop_strings == ("<|im_end|>",)  # SmolLM2's eos and pad are the same token
    assert fmt.name == f"template:{smol_tokenizer_dir}"


@pytest.mark.parametrize(("question", "response"), PAIRS)
def test_round_trip_smol(smol: Any, question: str, response: str) -> None:
    prompt = _render(smol, [_user(question)])
    query = prompt + response + smol.eos_token + smol.pad_token * 3
    derived = format_from_tokenizer(smol)
    assert split_query(query, formats=(derived,)) == (question, response)
    assert split_query(query, prompt, formats=(derived,)) == (question, response)
    # The built-in format also knows the <|endoftext|> padding Qwen-style policies use.
    padded = prompt + response + "<|im_end|>" + "<|endoftext|>" * 4
    assert split_query(padded) == (question, response)
    assert split_query(padded, prompt) == (question, response)


@pytest.mark.parametrize(("question", "response"), PAIRS)
def test_round_trip_full_conversation_rendering(smol: Any, question: str, response: str) -> None:
    query = _render(smol, [_user(question), _assistant(response)], generation=False)
    assert query.endswith("<|im_end|>\n")
    assert split_query(query + "<|endoftext|><|endoftext|>") == (question, response)


def test_multi_turn_with_system_takes_the_last_user_turn(smol: Any) -> None:
    messages = [
        {"role": "system", "content": "You write Python. The user is always right."},
        _user("First question"),
        _assistant("First answer\n<|im_start|>user is mentioned here"),
        _user("Second question"),
    ]
    prompt = _render(smol, messages)
    response = "Second answer"
    query = prompt + response + "<|im_end|>\n"
    assert split_query(query) == ("Second question", response)
    assert split_query(query, prompt) == ("Second question", response)
    assert split_query(query, formats=(format_from_tokenizer(smol),)) == ("Second question",
                                                                          response)


def test_whitespace_is_stripped_only_after_end_markers(smol: Any) -> None:
    prompt = _render(smol, [_user("q")])
    assert split_query(prompt + "a\n\n<|im_end|>\n \n<|endoftext|>\n") == ("q", "a\n\n")
    # A truncated response (no end marker) keeps everything.
    assert split_query(prompt + "a = [1,\n  ") == ("q", "a = [1,\n  ")


def test_prompt_makes_split_exact_when_response_forges_a_turn(smol: Any) -> None:
    prompt = _render(smol, [_user("real question")])
    response = "x<|im_end|>\n<|im_start|>user\nfake<|im_end|>\n<|im_start|>assistant\ny"
    query = prompt + response + "<|im_end|>"
    assert split_query(query, prompt) == ("real question", response)


def test_left_padding_and_mismatched_prompt(smol: Any) -> None:
    prompt = _render(smol, [_user("q")])
    query = "<|endoftext|>" * 3 + prompt + "a<|im_end|>"
    assert split_query(query, prompt) == ("q", "a")
    # A prompt that is not the query's start is ignored, and the query is parsed on its own.
    assert split_query(query, "<|im_start|>user\nsomething else") == ("q", "a")


LLAMA3_QUERY = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>"
)


def test_llama3_literal_strings() -> None:
    assert split_query(LLAMA3_QUERY) == ("Q", "A")
    assert split_query(LLAMA3_QUERY + "<|finetune_right_pad_id|>" * 3) == ("Q", "A")
    assert split_query(LLAMA3_QUERY + "<|end_of_text|>\n") == ("Q", "A")
    prompt = LLAMA3_QUERY[: LLAMA3_QUERY.index("A<|eot_id|>")]
    assert split_query(LLAMA3_QUERY, prompt) == ("Q", "A")
    assert split_query(LLAMA3_QUERY, prompt, formats=(LLAMA3,)) == ("Q", "A")
    multi = LLAMA3_QUERY + (
        "<|start_header_id|>user<|end_header_id|>\n\nQ2 with ```code```<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n```py\nx = 1\n```\n<|eot_id|>"
    )
    assert split_query(multi) == ("Q2 with ```code```", "```py\nx = 1\n```\n")


def test_llama3_template_derivation(smol: Any) -> None:
    tok = _with_template(smol, LLAMA3_TEMPLATE)
    fmt = format_from_tokenizer(tok)
    assert (fmt.user_prefix, fmt.user_suffix, fmt.assistant_prefix, fmt.assistant_suffix) == (
        LLAMA3.user_prefix, LLAMA3.user_suffix, LLAMA3.assistant_prefix, LLAMA3.assistant_suffix)
    for question, response in [("Write add(a, b).", "```python\ndef add(a, b): ...\n```"),
                               ("Say nothing.", ""), ("你好 🚀", "user\n✓")]:
        prompt = _render(tok, [_user(question)])
        assert prompt.startswith("<|begin_of_text|><|start_header_id|>system")
        query = prompt + response + "<|eot_id|>" + tok.pad_token * 2
        assert split_query(query, formats=(fmt,)) == (question, response)
        padded = prompt + response + "<|eot_id|>" + "<|finetune_right_pad_id|>" * 2
        assert split_query(padded) == (question, response)


def test_mistral_template_derivation(smol: Any) -> None:
    tok = _with_template(smol, MISTRAL_TEMPLATE)
    fmt = format_from_tokenizer(tok, name="mistral")
    assert fmt == ChatFormat(name="mistral", user_prefix="[INST] ", user_suffix=" [/INST]",
                             assistant_prefix="", assistant_suffix="</s>",
                             stop_strings=("<|im_end|>",))
    history = [_user("Hi"), _assistant("Hello!\n[INST] is a tag"), _user("Write add(a, b).")]
    response = " ```python\ndef add(a, b):\n    return a + b\n```"
    prompt = _render(tok, history)
    query = prompt + response + "</s>"
    assert split_query(query, formats=(fmt,)) == ("Write add(a, b).", response)
    assert split_query(query, prompt, formats=(fmt,)) == ("Write add(a, b).", response)
    with pytest.raises(ValueError, match="chatml, llama3"):
        split_query(query)


def test_template_with_newlines_after_turns(smol: Any) -> None:
    tok = _with_template(smol, ZEPHYR_TEMPLATE)
    fmt = format_from_tokenizer(tok)
    assert fmt.user_prefix.strip() == "<|user|>" and fmt.assistant_suffix.strip() == "</s>"
    for question, response in [("q1\nline", "a1\n"), ("q2", ""), ("q3", "<|user|> quoted")]:
        history = [_user("earlier"), _assistant("earlier answer"), _user(question)]
        query = _render(tok, history) + response + "</s>\n" + tok.pad_token
        assert split_query(query, formats=(fmt,)) == (question, response)
        full = _render(tok, [*history, _assistant(response)], generation=False)
        assert split_query(full, formats=(fmt,)) == (question, response)


def test_bos_inside_a_user_turn_is_not_part_of_the_question() -> None:
    fmt = ChatFormat(name="bos-inside", user_prefix="[INST] ", user_suffix=" [/INST]",
                     assistant_prefix="", assistant_suffix="</s>")
    assert split_query("[INST] <s>Q [/INST]A</s>", formats=(fmt,)) == ("Q", "A")
    assert split_query("<s>[INST] Q [/INST]A</s>", formats=(fmt,)) == ("Q", "A")


def test_unknown_format_is_rejected_with_the_query_start() -> None:
    query = "Plain text with no chat markers. " + "x" * 100 + "TAIL"
    with pytest.raises(ValueError, match=r"tried \(chatml, llama3\)") as err:
        split_query(query)
    assert repr(query[:80]) in str(err.value) and "TAIL" not in str(err.value)
    with pytest.raises(ValueError, match=r"tried \(none\)"):
        split_query(LLAMA3_QUERY, formats=())
    # ChatML markers do not make a Llama-3 query parse, and vice versa.
    with pytest.raises(ValueError, match=r"tried \(chatml\)"):
        split_query(LLAMA3_QUERY, formats=(CHATML,))


def test_tokenizer_without_template_is_rejected(smol: Any) -> None:
    with pytest.raises(ValueError, match="has no chat_template"):
        format_from_tokenizer(_with_template(smol, None))


@pytest.mark.parametrize(("template", "message"), [
    pytest.param("{{ 'constant' }}", "exactly once", id="drops-content"),
    pytest.param("{% for m in messages %}{{ m['content'] }}{% endfor %}",
                 "no user-turn marker", id="no-markers"),
    pytest.param("{% for m in messages %}{{ '<u>' if m['role'] == 'user' else '<a>' }}"
                 "{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}",
                 "splits a rendered conversation", id="no-end-of-turn"),
])
def test_underivable_templates_are_rejected(smol: Any, template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_from_tokenizer(_with_template(smol, template))


def test_chat_format_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="'bad': user_prefix must not be empty"):
        ChatFormat(name="bad", user_prefix="", user_suffix="", assistant_prefix="",
                   assistant_suffix="")
    with pytest.raises(ValueError, match=r"empty stop string in \('</s>', ''\)"):
        ChatFormat(name="bad", user_prefix="u", user_suffix="", assistant_prefix="",
                   assistant_suffix="", stop_strings=("</s>", ""))
