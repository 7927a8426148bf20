"""Chat-template markers, and recovering (question, response) from a policy's templated query."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

logger = logging.getLogger(__name__)

# Tokens a tokenizer may put in front of the whole text; they are never part of a question.
BOS_TOKENS: tuple[str, ...] = ("<|begin_of_text|>", "<s>")


@dataclass(frozen=True, kw_only=True)
class ChatFormat:
    """How one chat template marks turns: the text around a user and an assistant message."""

    name: str
    """A label for messages and logs."""
    user_prefix: str
    """Text right before a user message's content."""
    user_suffix: str
    """Text right after a user message's content (its end of turn)."""
    assistant_prefix: str
    """Text right before an assistant message's content: the generation prompt."""
    assistant_suffix: str
    """Text right after an assistant message's content (its end of turn)."""
    stop_strings: tuple[str, ...] = ()
    """Extra tokens (eos, pad) that may trail a generated response and are stripped from it."""

    def __post_init__(self) -> None:
        if not self.user_prefix:
            raise ValueError(f"ChatFormat {self.name!r}: user_prefix must not be empty")
        if "" in self.stop_strings:
            raise ValueError(
                f"ChatFormat {self.name!r}: empty stop string in {self.stop_strings!r}"
            )


CHATML = ChatFormat(
    name="chatml",
    user_prefix="<|im_start|>user\n",
    user_suffix="<|im_end|>\n",
    assistant_prefix="<|im_start|>assistant\n",
    assistant_suffix="<|im_end|>\n",
    stop_strings=("<|endoftext|>",),
)

LLAMA3 = ChatFormat(
    name="llama3",
    user_prefix="<|start_header_id|>user<|end_header_id|>\n\n",
    user_suffix="<|eot_id|>",
    assistant_prefix="<|start_header_id|>assistant<|end_header_id|>\n\n",
    assistant_suffix="<|eot_id|>",
    stop_strings=("<|end_of_text|>", "<|eom_id|>", "<|finetune_right_pad_id|>"),
)


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer that `format_from_tokenizer` uses."""

    chat_template: Any
    eos_token: Any
    pad_token: Any

    def apply_chat_template(self, conversation: list[dict[str, str]], /, *, tokenize: bool,
                            add_generation_prompt: bool) -> Any:
        """Render a conversation with the tokenizer's template."""
        ...


# Plain ASCII letters, so no template escapes, trims or re-cases them, and none is a prefix of
# another, so each can be located unambiguously in a rendering.
_U1 = "QzxSentinelUserOneQzx"
_A1 = "QzxSentinelAssistantOneQzx"
_U2 = "QzxSentinelUserTwoQzx"
_A2 = "QzxSentinelAssistantTwoQzx"


def _render(tokenizer: ChatTokenizer, turns: Sequence[tuple[str, str]], *, generation: bool) -> str:
    messages = [{"role": role, "content": content} for role, content in turns]
    return str(
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    )


def _locate(text: str, sentinel: str) -> int:
    index = text.find(sentinel)
    if index < 0 or text.find(sentinel, index + 1) >= 0:
        raise ValueError(
            f"chat template must render the message {sentinel!r} exactly once, got {text!r}"
        )
    return index


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def format_from_tokenizer(tokenizer: ChatTokenizer, *, name: str | None = None) -> ChatFormat:
    """Derive the markers from a tokenizer's own chat template by rendering sentinel messages.

    Four renderings of sentinel messages U1, A1, U2 are compared:

    - ``[U1]`` without and with the generation prompt: the text after U1 in the first is the
      user suffix (their common prefix, in case a template appends text to every rendering),
      and what the generation prompt adds after it is the assistant prefix.
    - ``[U1, A1]``: the text after A1 is the assistant suffix.
    - ``[U1, A1, U2]``: the text between A1 and U2 is assistant suffix + user prefix, so the
      user prefix is what follows the assistant suffix there. Reading it from between two turns,
      never from before the first user message, keeps out a BOS token and any default system
      prompt the template injects there (SmolLM2's does).

    The result, named `name` (default ``template:<name_or_path>``), is checked by splitting a
    rendered two-exchange conversation with it. Raises ValueError when the tokenizer has no chat
    template or the markers cannot be derived.
    """
    template = getattr(tokenizer, "chat_template", None)
    label = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    if not template:
        raise ValueError(
            f"tokenizer {label!r} has no chat_template; set tokenizer.chat_template or "
            f"pass a built-in ChatFormat ({CHATML.name}, {LLAMA3.name})"
        )
    user_only = _render(tokenizer, [("user", _U1)], generation=False)
    prompted = _render(tokenizer, [("user", _U1)], generation=True)
    answered = _render(tokenizer, [("user", _U1), ("assistant", _A1)], generation=False)
    second = _render(tokenizer, [("user", _U1), ("assistant", _A1), ("user", _U2)], generation=True)

    after_user = user_only[_locate(user_only, _U1) + len(_U1):]
    after_prompt = prompted[_locate(prompted, _U1) + len(_U1):]
    user_suffix = _common_prefix(after_user, after_prompt)
    assistant_prefix = after_prompt[len(user_suffix):]

    after_answer = answered[_locate(answered, _A1) + len(_A1):]
    between = second[_locate(second, _A1) + len(_A1):_locate(second, _U2)]
    # Normally the whole tail after A1 starts the gap; if the template appends a trailer to the
    # conversation, only the shared part is the end of the assistant turn.
    if between.startswith(after_answer):
        assistant_suffix = after_answer
    else:
        assistant_suffix = _common_prefix(between, after_answer)
    user_prefix = between[len(assistant_suffix):]
    if not user_prefix:
        raise ValueError(
            f"tokenizer {label!r}: no user-turn marker between turns in {second!r}"
        )

    stops: list[str] = []
    for token in (getattr(tokenizer, "eos_token", None), getattr(tokenizer, "pad_token", None)):
        if isinstance(token, str) and token and token not in stops:
            stops.append(token)
    fmt = ChatFormat(
        name=name or f"template:{label}",
        user_prefix=user_prefix,
        user_suffix=user_suffix,
        assistant_prefix=assistant_prefix,
        assistant_suffix=assistant_suffix,
        stop_strings=tuple(stops),
    )

    # A policy query is prompt + generated text + eos + pads; the derived markers must undo that.
    probe = second + _A2 + "".join(stops) + "".join(stops)
    try:
        recovered: tuple[str, str] | str = split_query(probe, formats=(fmt,))
    except ValueError as e:
        recovered = f"an error ({e})"
    if recovered != (_U2, _A2):
        raise ValueError(
            f"tokenizer {label!r}: derived {fmt!r} splits a rendered conversation into "
            f"{recovered!r}, expected {(_U2, _A2)!r}"
        )
    return fmt


class _Exchange(NamedTuple):
    question_start: int
    question_end: int
    response_start: int


def _core(marker: str) -> str:
    """The marker without surrounding whitespace (unless it is all whitespace)."""
    return marker.strip() or marker


def _last_exchange(text: str, fmt: ChatFormat) -> _Exchange | None:
    """Find the last user turn that is followed by the generation prompt.

    Scans left to right, moving past each answered exchange only at an end-of-turn marker, so a
    response that merely mentions a marker (code that builds chat prompts, say) is not split:
    that would take an end-of-turn, a whole user turn and an assistant prefix inside it.
    """
    suffix = _core(fmt.user_suffix)
    suffix_lead = fmt.user_suffix[: len(fmt.user_suffix) - len(fmt.user_suffix.lstrip())]
    suffix_trail = fmt.user_suffix[len(fmt.user_suffix.rstrip()):]
    end_of_turn = fmt.assistant_suffix.strip()
    found: _Exchange | None = None
    pos = 0
    while True:
        start = text.find(fmt.user_prefix, pos)
        if start < 0:
            break
        q_start = start + len(fmt.user_prefix)
        q_end = text.find(suffix, q_start)
        if q_end < 0:
            break
        after = q_end + len(suffix)
        if suffix_lead and text[q_start:q_end].endswith(suffix_lead):
            q_end -= len(suffix_lead)
        r_start = _after_generation_prompt(text, after, suffix_trail, fmt.assistant_prefix)
        if r_start is None:
            # A user turn not answered here (another user or tool turn follows): look further.
            pos = after
            continue
        found = _Exchange(q_start, q_end, r_start)
        if not end_of_turn:
            pos = r_start
            continue
        end = text.find(end_of_turn, r_start)
        if end < 0:
            break
        pos = end + len(end_of_turn)
    return found


def _after_generation_prompt(text: str, at: int, trail: str, prefix: str) -> int | None:
    """Where the response starts, if the generation prompt follows a user turn ending at `at`."""
    if text.startswith(trail + prefix, at):
        return at + len(trail) + len(prefix)
    if not prefix:
        return at
    # Tolerate templates that put other whitespace between turns than the one we derived.
    j = at
    while j < len(text) and text[j].isspace():
        j += 1
    if text.startswith(prefix, j):
        return j + len(prefix)
    return None


def _strip_response(response: str, fmt: ChatFormat) -> str:
    """Drop trailing end-of-turn and pad tokens, and the whitespace after them, nothing else."""
    markers = sorted({m for m in (fmt.assistant_suffix.strip(), *fmt.stop_strings) if m},
                     key=len, reverse=True)
    end = len(response)
    while True:
        # Whitespace is only removed together with a marker before it: a response's own
        # trailing newline, ahead of its eos, is kept.
        candidate = response[:end].rstrip()
        marker = next((m for m in markers if candidate.endswith(m)), None)
        if marker is None:
            return response[:end]
        end = len(candidate) - len(marker)


def _strip_leading(text: str, tokens: Sequence[str]) -> str:
    """Drop BOS and (left) pad tokens from the start of `text`."""
    changed = True
    while changed:
        changed = False
        for token in tokens:
            if token and text.startswith(token):
                text = text[len(token):]
                changed = True
    return text


def _question(text: str, exchange: _Exchange) -> str:
    question = text[exchange.question_start:exchange.question_end]
    # A template that opens every user turn with BOS would otherwise leak it into the question.
    return _strip_leading(question, BOS_TOKENS)


def split_query(
    query: str,
    prompt: str | None = None,
    formats: Sequence[ChatFormat] = (CHATML, LLAMA3),
) -> tuple[str, str]:
    """Return (question, response) from a policy's chat-templated query.

    The question is the content of the last user turn; system turns and earlier turns are
    ignored. The response is everything after the generation prompt that follows it, with its
    end-of-turn marker, known stop strings, trailing pad tokens and the whitespace after those
    stripped; its own whitespace is kept.

    When `prompt` is given and `query` starts with it (leading BOS and pad tokens aside), the
    response is the rest of the query, stripped the same way, and the question comes from the
    prompt; this is exact even when the response quotes chat markers. Otherwise the markers of
    each format in `formats` are tried in order on the query and the first that matches wins.
    Raises ValueError naming the formats tried and the start of the query when none matches.
    """
    leading = (*BOS_TOKENS, *(s for fmt in formats for s in fmt.stop_strings))
    text = _strip_leading(query, leading)
    if prompt is not None:
        head = _strip_leading(prompt, leading)
        if text.startswith(head):
            for fmt in formats:
                exchange = _last_exchange(head, fmt)
                if exchange is not None and exchange.response_start == len(head):
                    return _question(head, exchange), _strip_response(text[len(head):], fmt)
            logger.debug("prompt does not end in a known generation prompt; parsing the query")
        else:
            logger.debug("query does not start with its prompt; parsing the query")
    for fmt in formats:
        exchange = _last_exchange(text, fmt)
        if exchange is not None:
            return _question(text, exchange), _strip_response(text[exchange.response_start:], fmt)
    tried = ", ".join(fmt.name for fmt in formats) or "none"
    raise ValueError(
        f"query matches none of the chat formats tried ({tried}); it starts with {query[:80]!r}"
    )
