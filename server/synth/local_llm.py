"""An in-process chat model with transformers `generate`, behind the same `chat()` as the
OpenAI-compatible client: the embedded default (SmolLM2-135M-Instruct) runs the pipeline end
to end with no server and no network.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from .llm import ChatResult, LLMError

JSON_PREFILL = '{"question": "'
"""How a JSON answer is started for local models (JSON mode's stand-in): small models that
wander into prose without it mostly stay in the object once it is begun."""


def render(tokenizer: Any, messages: Sequence[dict[str, str]],
           json: bool | None) -> tuple[str, str]:
    """(prompt text, prefill): the chat template with the assistant turn opened, and, when
    JSON is wanted (`json` True, or None: the default of answer-shaped calls), the start of
    the object the answer must be."""
    prompt = str(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                               tokenize=False))
    prefill = JSON_PREFILL if json is not False else ""
    return prompt + prefill, prefill


class TransformersChat:
    """Chat completions from a local causal LM. Generation runs in a worker thread, one at a
    time (a CPU is saturated by one). JSON mode is emulated by starting the answer with
    `JSON_PREFILL` (no constrained decoding)."""

    def __init__(self, model: str = "embedded:smollm2-135m", *, device: str = "cpu",
                 max_tokens: int = 512, temperature: float = 0.7, seed: int = 0) -> None:
        from acecoder.models import reward as models

        self.path = models.resolve(model)
        self.device = device
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # an RM checkpoint's value head is reported unused
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        # transformers wraps `PreTrainedModel.to` in functools.wraps, which mypy binds
        # without `self`.
        self._model = AutoModelForCausalLM.from_pretrained(
            str(self.path), dtype=torch.float32).to(self.device).eval()  # type: ignore[arg-type]

    def _generate(self, messages: Sequence[dict[str, str]], temperature: float,
                  max_tokens: int, json: bool | None) -> ChatResult:
        import torch

        started = time.monotonic()
        with self._lock:
            self.load()
            tok = self._tokenizer
            prompt, prefill = render(tok, messages, json)
            ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
            input_ids = ids["input_ids"].to(self.device)
            kw: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id":
                                  tok.pad_token_id or tok.eos_token_id}
            if temperature > 0:
                torch.manual_seed(self.seed)
                kw.update(do_sample=True, temperature=temperature, top_p=1.0)
            else:
                kw.update(do_sample=False)
            with torch.inference_mode():
                out = self._model.generate(input_ids=input_ids,
                                           attention_mask=ids["attention_mask"].to(self.device),
                                           **kw)
        new = out[0, input_ids.shape[1]:].tolist()
        eos = tok.eos_token_id
        finished = eos is not None and eos in new
        if finished:
            new = new[:new.index(eos)]
        text = prefill + tok.decode(new, skip_special_tokens=True)
        return ChatResult(text, "stop" if finished else "length", int(input_ids.shape[1]),
                          len(new), time.monotonic() - started, 1)

    async def chat(self, messages: Sequence[dict[str, str]], *, temperature: float | None = None,
                   max_tokens: int | None = None, json: bool | None = None) -> ChatResult:
        try:
            return await asyncio.to_thread(
                self._generate, messages, self.temperature if temperature is None else temperature,
                self.max_tokens if max_tokens is None else max_tokens, json)
        except (RuntimeError, ValueError) as exc:
            raise LLMError(f"local generation failed: {exc}", transient=False) from None

    async def close(self) -> None:
        self._model = None
