"""A client for any OpenAI-compatible chat endpoint (a vLLM server, a hosted API).

Bounded concurrency, a timeout per call, retries with jittered exponential backoff on
transient failures only (connection errors, timeouts, 429, 5xx; `Retry-After` honoured, capped),
and JSON mode (`response_format: json_object`) when the server takes it: a server that
refuses it is remembered and asked without it from then on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class LLMError(Exception):
    """A chat call failed. `transient` says whether it was worth retrying (and was)."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


@dataclass(frozen=True, kw_only=True)
class LLMConfig:
    base_url: str
    """The API root, e.g. http://localhost:8000/v1 (POST {base_url}/chat/completions)."""
    model: str
    """Model name to send."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the bearer token (none sent when unset)."""
    concurrency: int = 16
    """Calls in flight at once."""
    timeout: float = 120.0
    """Seconds for one call."""
    attempts: int = 5
    """Tries per call, the first included."""
    backoff: float = 0.5
    """First retry delay, seconds; doubles each time, with jitter."""
    max_backoff: float = 20.0
    temperature: float = 0.7
    max_tokens: int = 2048
    json_mode: bool = True
    """Ask for a JSON object (dropped automatically if the server refuses it)."""

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        if self.concurrency < 1 or self.attempts < 1:
            raise ValueError("concurrency and attempts must be >= 1")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")


@dataclass(frozen=True)
class ChatResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    attempts: int


class Chat(Protocol):
    """What the pipeline needs from a chat model: this module's HTTP client, or an in-process
    one (`local_llm.TransformersChat`)."""

    async def chat(self, messages: Sequence[dict[str, str]], *, temperature: float | None = None,
                   max_tokens: int | None = None, json: bool | None = None) -> ChatResult: ...

    async def close(self) -> None: ...


class ChatClient:
    """asyncio client; one per event loop. `await close()` when done."""

    def __init__(self, config: LLMConfig, *, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.config = config
        headers = {}
        key = os.environ.get(config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.AsyncClient(base_url=config.base_url.rstrip("/"), headers=headers,
                                       timeout=config.timeout, transport=transport)
        self._limit = asyncio.Semaphore(config.concurrency)
        self.json_mode = config.json_mode
        self.calls = 0
        self.retries = 0

    async def close(self) -> None:
        await self._http.aclose()

    async def chat(self, messages: Sequence[dict[str, str]], *, temperature: float | None = None,
                   max_tokens: int | None = None, json: bool | None = None) -> ChatResult:
        """One chat completion. Raises LLMError when it fails for good."""
        cfg = self.config
        body: dict[str, Any] = {
            "model": cfg.model, "messages": list(messages),
            "temperature": cfg.temperature if temperature is None else temperature,
            "max_tokens": cfg.max_tokens if max_tokens is None else max_tokens,
        }
        want_json = self.json_mode if json is None else (json and self.json_mode)
        async with self._limit:
            started = time.monotonic()
            for attempt in range(1, cfg.attempts + 1):
                self.calls += 1
                if want_json:
                    body["response_format"] = {"type": "json_object"}
                else:
                    body.pop("response_format", None)
                try:
                    reply = await self._http.post("/chat/completions", json=body)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    error = LLMError(f"{type(exc).__name__}: {exc}", transient=True)
                    retry_after = None
                else:
                    if reply.status_code == 200:
                        return self._result(reply, started, attempt)
                    detail = reply.text[:300]
                    if reply.status_code == 400 and want_json and "response_format" in detail:
                        logger.info("%s refuses JSON mode; asking without it", cfg.base_url)
                        self.json_mode = want_json = False
                        continue
                    transient = reply.status_code in TRANSIENT_STATUS
                    error = LLMError(f"HTTP {reply.status_code}: {detail}",
                                     transient=transient, status=reply.status_code)
                    retry_after = _retry_after(reply)
                    if not transient:
                        raise error
                if attempt == cfg.attempts:
                    raise error
                self.retries += 1
                base = min(cfg.max_backoff, cfg.backoff * 2 ** (attempt - 1))
                pause = retry_after if retry_after is not None else random.uniform(base / 2, base)
                await asyncio.sleep(min(pause, cfg.max_backoff))
        raise AssertionError("unreachable")

    def _result(self, reply: httpx.Response, started: float, attempt: int) -> ChatResult:
        try:
            data = reply.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"malformed completion ({type(exc).__name__}): "
                           f"{reply.text[:200]!r}", transient=False) from None
        usage = data.get("usage") or {}
        return ChatResult(text, str(choice.get("finish_reason") or ""),
                          int(usage.get("prompt_tokens") or 0),
                          int(usage.get("completion_tokens") or 0),
                          time.monotonic() - started, attempt)


def _retry_after(reply: httpx.Response) -> float | None:
    value = reply.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
