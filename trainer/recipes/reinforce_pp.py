"""`acecoder train rl`: REINFORCE++ on DeepSpeed, with rewards from the services over gRPC.

One step = one rollout and the policy updates it feeds:

1. rollout: this process's share of the step's prompts, `generate_batch` prompts at a time,
   `samples_per_prompt` responses each. Each chunk's samples are sent for scoring as soon as
   they exist (a future) and the next chunk is generated, and the old policy's and the frozen
   reference's log-probs computed, while they are scored (`overlap`). Waiting on rewards only
   happens once nothing else is left to do, and is timed.
2. advantages: the reward on the last response token, minus kl_coef * KL(old || reference)
   on every token; returns are reverse cumulative sums; advantages are the returns whitened
   over every response token of the global batch (`baseline`: each reward minus the mean of
   its prompt's samples first). A sample without a reward (the service failed) is dropped:
   its tokens get no weight, and it is counted.
3. update: micro-batches of samples, PPO-clipped loss (token mean), DeepSpeed's gradient
   accumulation to `train_batch` samples per optimizer step.

Checkpoints hold the model, optimizer and scheduler (DeepSpeed's), every process's RNG and
the step number, which is the data position (see `rl_data.step_indices`): a killed run
started again with the same output directory resumes, and its next steps match the ones an
uninterrupted run takes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from acecoder.clients.rewards import Reward, RewardScorer, RewardSpec, Sample
from acecoder.executor.types import Flag
from acecoder.jsonl import Progress
from acecoder.trainer import distributed, reinforce, rl_data, rollout
from acecoder.trainer.losses import cosine_with_warmup
from acecoder.trainer.recipes import base

logger = logging.getLogger(__name__)

ESTIMATORS = ("reinforce", "baseline")
ROLLOUT_ENGINES = ("auto", "transformers", "vllm")
FLAGS = tuple(f.value for f in Flag)  # the reward-hack kinds the executor flags
CHECKPOINTS = "checkpoints"
LATEST = "latest"  # the name DeepSpeed's load_checkpoint reads the tag from
STATE = "trainer_state.json"  # step, totals and settings of a checkpoint
# Settings a resumed run must share with the run that wrote the checkpoint.
RESUME_MUST_MATCH = ("data", "limit", "model", "rollout_batch", "samples_per_prompt",
                     "train_batch", "micro_batch", "seed", "zero_stage")


@dataclass(frozen=True, kw_only=True)
class RLTrainConfig:
    data: str
    """Prompts: AceCode-87K records (JSONL) or `embedded:mbpp`."""
    output: Path
    """Metrics, TensorBoard, checkpoints and the trained policy (`policy/`)."""
    model: str = "embedded:smollm2-135m"
    """The policy to start from (a causal LM; an AceCode-RM checkpoint's LM works too)."""
    limit: int | None = None
    """Only the first N prompts."""
    reward: str = "rule"
    """rule (executor), rm (RM server) or mix."""
    binary: bool = True
    """rule: 1.0 only when every test passes (AceCoder's RL reward), else the pass rate."""
    rm_weight: float = 0.5
    executor: str | None = None
    rm: str | None = None
    reward_deadline: float = 120.0
    test_timeout: float | None = None
    steps: int = 80
    rollout_batch: int = 256
    """Prompts per step, over all processes."""
    samples_per_prompt: int = 8
    train_batch: int = 128
    """Samples per optimizer step, over all processes."""
    micro_batch: int = 4
    """Samples per forward/backward per process."""
    generate_batch: int = 16
    """Prompts per generate call per process (one chunk is scored while the next is made)."""
    max_prompt_length: int = 1024
    """Longer prompts are left out (and counted), never truncated."""
    max_new_tokens: int = 1024
    temperature: float = 1.0
    lr: float = 5e-7
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    kl_coef: float = 0.01
    kl_estimator: str = "k1"
    estimator: str = "reinforce"
    """reinforce (REINFORCE++) or baseline (minus the mean reward of the prompt's samples)."""
    eps_clip: float = 0.2
    gamma: float = 1.0
    update_epochs: int = 1
    """Passes over each rollout."""
    zero_stage: int = 0
    dtype: str = "auto"
    device: str = "auto"
    gradient_checkpointing: bool = False
    grad_clip: float = 1.0
    overlap: bool = True
    """Score rewards while generating (off: generate, then wait for the scores)."""
    rollout_engine: str = "auto"
    """transformers, vllm (weights pushed after each update), or auto: vllm on GPU when it
    is installed, else transformers."""
    save_every: int = 10
    """Checkpoint every N steps (and after the last)."""
    keep_checkpoints: int = 2
    resume: bool = True
    """Continue from the output directory's latest checkpoint when there is one."""
    save_policy: bool = True
    """Write the trained policy (Hugging Face format) to output/policy at the end."""
    seed: int = 0
    deepspeed_config: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "rollout_batch", "samples_per_prompt", "train_batch",
                     "micro_batch", "generate_batch", "max_prompt_length", "max_new_tokens",
                     "update_epochs", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, "
                             f"got {self.estimator!r}")
        if self.kl_estimator not in reinforce.KL_KINDS:
            raise ValueError(f"kl_estimator must be one of {', '.join(reinforce.KL_KINDS)}, "
                             f"got {self.kl_estimator!r}")
        if self.kl_coef < 0 or self.eps_clip <= 0 or not 0 < self.gamma <= 1:
            raise ValueError("kl_coef must be >= 0, eps_clip > 0 and gamma in (0, 1]")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.save_every < 0:
            raise ValueError(f"save_every must be >= 0, got {self.save_every}")
        if self.rollout_engine not in ROLLOUT_ENGINES:
            raise ValueError(f"rollout_engine must be one of {', '.join(ROLLOUT_ENGINES)}, "
                             f"got {self.rollout_engine!r}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"dtype must be auto, float32 or bfloat16, got {self.dtype!r}")
        samples = self.rollout_batch * self.samples_per_prompt
        if samples % self.train_batch:
            raise ValueError(f"rollout_batch x samples_per_prompt ({samples}) must be a "
                             f"multiple of train_batch ({self.train_batch})")
        self.reward_spec()  # the reward settings are checked now, not at the first step

    def reward_spec(self) -> RewardSpec:
        return RewardSpec(kind=self.reward, binary=self.binary, rm_weight=self.rm_weight,
                          executor=self.executor, rm=self.rm, deadline=self.reward_deadline,
                          test_timeout=self.test_timeout)

    @classmethod
    def from_preset(cls, preset: Path | None, **kw: Any) -> RLTrainConfig:
        """A preset JSON's values, then `kw` (None values ignored) on top."""
        values = base.preset_values(cls, preset, kw, paths=("output", "deepspeed_config"))
        return cls(**{**values, "data": str(values["data"])})

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


@dataclass
class Item:
    """One sample of this process's share of a step."""
    prompt: list[int]
    response: list[int]
    group: int
    """The prompt's index (the `baseline` estimator's group)."""
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    reward: Reward | None = None
    advantage: torch.Tensor | None = None

    @property
    def kept(self) -> bool:
        return self.reward is not None and self.reward.value is not None and bool(self.response)


class RLTrainer:
    def __init__(self, config: RLTrainConfig) -> None:
        self.config = config
        self.step = 0
        self.log: base.MetricsLog | None = None
        self.rewards: RewardScorer | None = None
        self.vllm: Any = None
        self.engine: Any = None
        self.totals: dict[str, int] = {"dropped": 0, "hacked": 0, "samples": 0}

    # -- setup ------------------------------------------------------------------------------

    def setup(self) -> None:
        import deepspeed
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from acecoder.models import reward as models

        c = self.config
        self.rank, self.world, local = distributed.ensure_env()
        device, dtype = base.placement(c.device, c.dtype, local)
        self.device = device
        if c.rollout_batch % self.world:
            raise ValueError(f"rollout_batch ({c.rollout_batch}) must be a multiple of the "
                             f"number of processes ({self.world})")
        if c.train_batch % (c.micro_batch * self.world):
            raise ValueError(f"train_batch ({c.train_batch}) must be a multiple of micro_batch "
                             f"x processes ({c.micro_batch} x {self.world})")
        torch_dtype = getattr(torch, dtype)
        torch.manual_seed(c.seed)
        random.seed(c.seed)

        hf_logging.set_verbosity_error()  # an AceCode-RM checkpoint's v_head is reported unused
        path = str(models.resolve(c.model))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        tok = self.tokenizer
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        prompts = rl_data.read_prompts(c.data, c.limit)
        ids = rollout.chat_prompts(tok, [p.messages for p in prompts])
        fits = [i for i, x in enumerate(ids) if len(x) <= c.max_prompt_length]
        self.too_long = len(prompts) - len(fits)
        if not fits:
            raise ValueError(f"every prompt is longer than max_prompt_length "
                             f"({c.max_prompt_length} tokens)")
        self.prompts = [prompts[i] for i in fits]
        self.prompt_ids = [ids[i] for i in fits]

        # transformers wraps `PreTrainedModel.to` in functools.wraps, which mypy binds
        # without `self`: hence the arg-type ignores.
        policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device)  # type: ignore[arg-type]
        if c.gradient_checkpointing:
            policy.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device)  # type: ignore[arg-type]
        reference.requires_grad_(False).eval()

        per_rank = c.rollout_batch // self.world * c.samples_per_prompt
        self.grad_accum = c.train_batch // (c.micro_batch * self.world)
        updates = c.rollout_batch * c.samples_per_prompt // c.train_batch * c.update_epochs
        self.micro_steps = math.ceil(per_rank / c.micro_batch) * c.update_epochs
        self.total_updates = c.steps * updates
        warmup = int(c.warmup_ratio * self.total_updates)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_with_warmup(s, total=self.total_updates, warmup=warmup))
        ds = distributed.ds_config(micro_batch=c.micro_batch, grad_accum=self.grad_accum,
                                   world=self.world, zero_stage=c.zero_stage,
                                   bf16=dtype == "bfloat16", grad_clip=c.grad_clip,
                                   overrides=c.deepspeed_config)
        self.engine, _, _, _ = deepspeed.initialize(model=policy, optimizer=optimizer,
                                                    lr_scheduler=schedule, config=ds)
        if c.zero_stage == 3:  # the reference is partitioned like the policy
            ref_ds = {k: v for k, v in ds.items() if k != "gradient_clipping"}
            self.reference, _, _, _ = deepspeed.initialize(model=reference, config=ref_ds)
            self.reference.eval()
        else:
            self.reference = reference
        self.rewards = RewardScorer(c.reward_spec())
        self.vllm = self._start_vllm(path, dtype, device)

        self.ckpt_dir = c.output / CHECKPOINTS
        if c.resume and (self.ckpt_dir / LATEST).is_file():
            self._resume()
            self.sync_rollout_weights()
        elif self.ckpt_dir.exists():
            import torch.distributed as dist

            if self.rank == 0:
                logger.warning("starting over: removing the checkpoints in %s", self.ckpt_dir)
                shutil.rmtree(self.ckpt_dir)
            dist.barrier()
        if self.rank == 0:
            c.output.mkdir(parents=True, exist_ok=True)
            (c.output / "config.json").write_text(json.dumps(c.to_json(), indent=2) + "\n")
        self.log = base.MetricsLog(c.output, self.rank, resume_after=self.step)
        if self.rank == 0:
            logger.info("REINFORCE++ on %s: %d prompts (%d too long, left out), %d steps of %d "
                        "prompts x %d samples, %d optimizer step(s) per rollout, %d "
                        "process(es), ZeRO %d, %s, rollouts on %s, rewards: %s%s", c.model,
                        len(self.prompts), self.too_long, c.steps, c.rollout_batch,
                        c.samples_per_prompt, updates, self.world, c.zero_stage, dtype,
                        self.rollout_engine, c.reward,
                        f"; resuming after step {self.step}" if self.step else "")

    def _start_vllm(self, path: str, dtype: str, device: str) -> Any:
        import importlib.util

        c = self.config
        engine = c.rollout_engine
        if engine == "auto":
            engine = ("vllm" if device != "cpu" and importlib.util.find_spec("vllm") else
                      "transformers")
        self.rollout_engine = engine
        if engine != "vllm":
            return None
        from acecoder.models import convert
        from acecoder.models import reward as models
        from acecoder.trainer.vllm_rollout import VllmRollout

        if models.has_value_head(Path(path)):  # an AceCode-RM checkpoint: vLLM wants the LM
            path = str(convert.cached(path, "lm", convert.to_causal_lm))
        return VllmRollout(path, dtype=dtype, seed=c.seed + self.rank,
                           max_model_len=c.max_prompt_length + c.max_new_tokens)

    def sync_rollout_weights(self) -> float:
        """Push the policy's current weights into the vLLM engine (no-op on transformers);
        the seconds it took."""
        if self.vllm is None:
            return 0.0
        import deepspeed

        started = time.monotonic()
        module = self.engine.module
        with deepspeed.zero.GatheredParameters(list(module.parameters()),
                                               enabled=self.config.zero_stage == 3):
            self.vllm.sync(module.named_parameters(),
                           self.config.output / ".rollout-weights" / f"rank{self.rank}")
        return time.monotonic() - started

    # -- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Every process writes its part; then rank 0 points `latest` at it (atomically), so
        a run killed half-way through a save resumes from the previous checkpoint."""
        import torch.distributed as dist

        tag = f"step{self.step}"
        where = self.ckpt_dir / tag
        where.mkdir(parents=True, exist_ok=True)
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(),
               "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        torch.save(rng, where / f"rng_rank{self.rank}.pt")
        self.engine.save_checkpoint(str(self.ckpt_dir), tag=tag, save_latest=False)
        if self.rank == 0:
            state = {"step": self.step, "totals": self.totals, "config": self.config.to_json()}
            (where / STATE).write_text(json.dumps(state, indent=2) + "\n")
        dist.barrier()
        if self.rank == 0:
            tmp = self.ckpt_dir / f".{LATEST}.tmp"
            tmp.write_text(tag)
            os.replace(tmp, self.ckpt_dir / LATEST)
            tags = sorted((p for p in self.ckpt_dir.glob("step*") if p.is_dir()),
                          key=lambda p: int(p.name[4:]))
            for old in tags[:-self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        dist.barrier()
        return where

    def _resume(self) -> None:
        c = self.config
        tag = (self.ckpt_dir / LATEST).read_text().strip()
        where = self.ckpt_dir / tag
        state = json.loads((where / STATE).read_text())
        saved = state["config"]
        differ = [k for k in RESUME_MUST_MATCH if saved.get(k) != c.to_json()[k]]
        if differ:
            raise ValueError(f"{c.output} holds a run with other settings "
                             f"({', '.join(f'{k}: {saved.get(k)!r}' for k in differ)}); use "
                             f"another output directory, or --no-resume to start over")
        self.engine.load_checkpoint(str(self.ckpt_dir), tag=tag)
        self.step = int(state["step"])
        self.totals = dict(state["totals"])
        rng = torch.load(where / f"rng_rank{self.rank}.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    # -- one step ---------------------------------------------------------------------------

    def _logprobs(self, rows: list[tuple[list[int], list[int]]]
                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The old policy's and the reference's log-probs of each row's response tokens."""
        batch = rollout.collate(rows, self.pad)
        with torch.no_grad():
            old, _ = rollout.response_logprobs(self.engine, batch)
            ref, _ = rollout.response_logprobs(self.reference, batch)
        lengths = [len(r) for _, r in rows]
        return ([old[i, :n].float().cpu() for i, n in enumerate(lengths)],
                [ref[i, :n].float().cpu() for i, n in enumerate(lengths)])

    def rollout(self) -> tuple[list[Item], dict[str, float]]:
        """Generate this process's samples of the step and get their rewards."""
        c = self.config
        assert self.rewards is not None
        mine = rl_data.step_indices(len(self.prompts), self.step, c.rollout_batch,
                                    c.seed)[self.rank::self.world]
        times = {"generate": 0.0, "reward_wait": 0.0, "logprobs": 0.0}
        items: list[Item] = []
        pending: list[tuple[list[Item], Any]] = []
        self.engine.eval()
        for j in range(0, len(mine), c.generate_batch):
            chunk = mine[j:j + c.generate_batch]
            started = time.monotonic()
            seed = (c.seed * 1_000_003 + self.step) * 1009 + self.rank * 101 + j
            ids = [self.prompt_ids[i] for i in chunk]
            if self.vllm is not None:
                roll = self.vllm.generate(ids, samples=c.samples_per_prompt,
                                          temperature=c.temperature,
                                          max_new_tokens=c.max_new_tokens, seed=seed,
                                          pad=self.pad)
            else:
                roll = rollout.generate(
                    self.engine.module, self.tokenizer, ids, samples=c.samples_per_prompt,
                    temperature=c.temperature, max_new_tokens=c.max_new_tokens, seed=seed,
                    synced_gpus=c.zero_stage == 3 and self.world > 1)
            times["generate"] += time.monotonic() - started
            groups = [chunk[k] for k in roll.prompt_index]
            samples = [Sample(self.prompts[g].question, text, self.prompts[g].tests,
                              self.prompts[g].setup, self.prompts[g].fn_name)
                       for g, text in zip(groups, roll.texts, strict=True)]
            future: Future[list[Reward]] | list[Reward] = self.rewards.submit(samples)
            if not c.overlap:
                future = self._wait(future, times, len(samples))
            started = time.monotonic()
            rows = rollout.split(roll)
            old, ref = self._logprobs(rows)
            times["logprobs"] += time.monotonic() - started
            chunk_items = [Item(p, r, g, o, f) for (p, r), g, o, f in zip(rows, groups, old, ref,
                                                                          strict=True)]
            items.extend(chunk_items)
            pending.append((chunk_items, future))
        for chunk_items, future in pending:
            for item, reward in zip(chunk_items, self._wait(future, times, len(chunk_items)),
                                    strict=True):
                item.reward = reward
        return items, times

    def _wait(self, future: Any, times: dict[str, float], n: int) -> list[Reward]:
        """A chunk's rewards; when the scoring itself failed or hung, none (each sample
        dropped and counted), never a crash of the run."""
        if isinstance(future, list):
            return future
        started = time.monotonic()
        try:
            return list(future.result(timeout=self.config.reward_deadline * 2 + 30))
        except Exception as exc:
            logger.warning("no rewards for %d samples: %s", n, exc or type(exc).__name__)
            return [Reward(None, error=f"scoring failed: {exc or type(exc).__name__}")] * n
        finally:
            times["reward_wait"] += time.monotonic() - started

    def advantages(self, items: list[Item]) -> dict[str, float]:
        """Fill each kept item's advantage; the step's reward and KL sums (this process)."""
        import torch.distributed as dist

        c = self.config
        kept = [it for it in items if it.kept]
        sums = {"kl": 0.0, "tokens": 0.0}
        returns: list[torch.Tensor] = []
        if kept:
            rewards = torch.tensor([float(it.reward.value) for it in kept])  # type: ignore[union-attr,arg-type]
            if c.estimator == "baseline":
                rewards = reinforce.group_baseline(rewards, torch.tensor([it.group for it in kept]))
            width = max(len(it.response) for it in kept)
            mask = torch.zeros(len(kept), width)
            logp = torch.zeros(len(kept), width)
            ref = torch.zeros(len(kept), width)
            for i, it in enumerate(kept):
                n = len(it.response)
                mask[i, :n] = 1
                logp[i, :n] = it.old_logp
                ref[i, :n] = it.ref_logp
            token_r, kl = reinforce.token_rewards(rewards, logp, ref, mask, kl_coef=c.kl_coef,
                                                  kind=c.kl_estimator)
            ret = reinforce.discounted_returns(token_r, mask, c.gamma)
            returns = [ret[i, :len(it.response)] for i, it in enumerate(kept)]
            sums = {"kl": float(kl.sum()), "tokens": float(mask.sum())}
        # whitened over every response token of the global batch
        flat = torch.cat(returns) if returns else torch.zeros(0)
        stats = torch.tensor([flat.sum(), (flat ** 2).sum(), flat.numel()], dtype=torch.float64)
        dist.all_reduce(stats)
        total, squares, count = (float(x) for x in stats)
        mean = total / max(count, 1.0)
        var = max(squares / max(count, 1.0) - mean ** 2, 0.0)
        for it, r in zip(kept, returns, strict=True):
            it.advantage = reinforce.whiten(r, torch.ones_like(r),
                                            stats=(torch.tensor(mean), torch.tensor(var)))
        return sums

    def update(self, items: list[Item]) -> dict[str, float]:
        """Policy updates on the step's samples; sums of the per-micro-batch metrics."""
        c = self.config
        self.engine.train()
        out = {"loss": 0.0, "clip": 0.0, "entropy": 0.0, "micro": 0.0}
        for epoch in range(c.update_epochs):
            gen = torch.Generator().manual_seed((c.seed * 7919 + self.step) * 31 + epoch)
            order = torch.randperm(len(items), generator=gen).tolist()
            for k in range(0, len(order), c.micro_batch):
                batch = [items[i] for i in order[k:k + c.micro_batch]]
                roll = rollout.collate([(it.prompt, it.response) for it in batch], self.pad)
                mask = roll.response_mask.float()
                old = torch.zeros(mask.shape)
                adv = torch.zeros(mask.shape)
                for i, it in enumerate(batch):
                    n = len(it.response)
                    if it.kept and it.advantage is not None:
                        old[i, :n] = it.old_logp
                        adv[i, :n] = it.advantage
                    else:
                        mask[i] = 0  # dropped: in the batch (every process steps alike), no weight
                logp, logits = rollout.response_logprobs(self.engine, roll, with_logits=True)
                mask, old, adv = (t.to(logp.device) for t in (mask, old, adv))
                loss, clip = reinforce.clipped_policy_loss(logp.float(), old, adv, mask,
                                                           c.eps_clip)
                self.engine.backward(loss)
                self.engine.step()
                assert logits is not None
                with torch.no_grad():
                    out["entropy"] += float(reinforce.entropy(logits.detach(), mask))
                out["loss"] += float(loss.detach())
                out["clip"] += float(clip)
                out["micro"] += 1
        return out

    def train_step(self) -> dict[str, Any]:
        import torch.distributed as dist

        started = time.monotonic()
        items, times = self.rollout()
        sums = self.advantages(items)
        t_update = time.monotonic()
        upd = self.update(items)
        times["update"] = time.monotonic() - t_update
        times["sync"] = self.sync_rollout_weights()
        times["step"] = time.monotonic() - started
        kept = [it for it in items if it.kept]
        values = [float(it.reward.value) for it in kept]  # type: ignore[union-attr,arg-type]
        rates = [it.reward.pass_rate for it in kept if it.reward.pass_rate is not None]  # type: ignore[union-attr]
        alls = [bool(it.reward.all_passed) for it in kept if it.reward.all_passed is not None]  # type: ignore[union-attr]
        rm_scores = [it.reward.rm_score for it in kept if it.reward.rm_score is not None]  # type: ignore[union-attr]
        local = [len(items), len(kept), sum(values), sum(v * v for v in values), sum(rates),
                 len(rates), sum(rm_scores), len(rm_scores), sum(alls),
                 sum(bool(it.reward and it.reward.hacked) for it in items),
                 sum(len(it.response) for it in items), sums["kl"], sums["tokens"], upd["loss"],
                 upd["clip"], upd["entropy"], upd["micro"], times["reward_wait"] / times["step"],
                 times["step"], times["generate"], times["reward_wait"], times["update"],
                 times["sync"],
                 *(sum(flag in it.reward.flags for it in items if it.reward) for flag in FLAGS)]
        t = torch.tensor(local, dtype=torch.float64)
        dist.all_reduce(t)
        (n, n_kept, r_sum, r_sq, rate_sum, n_rates, rm_sum, n_rm, all_sum, hacked, length, kl,
         tokens, loss, clip, ent, micro, wait_share, step_s, gen_s, wait_s, upd_s, sync_s,
         *per_flag) = (
            float(x) for x in t)
        w = self.world
        self.step += 1
        dropped = int(n - n_kept)
        self.totals["dropped"] += dropped
        self.totals["hacked"] += int(hacked)
        self.totals["samples"] += int(n)
        mean = r_sum / n_kept if n_kept else float("nan")
        row = {
            "step": self.step,
            "epoch": rl_data.epoch_of(self.step, self.config.rollout_batch, len(self.prompts)),
            "samples": int(n),
            "reward/mean": mean,
            "reward/std": math.sqrt(max(r_sq / n_kept - mean ** 2, 0.0)) if n_kept else math.nan,
            "reward/pass_rate": rate_sum / n_rates if n_rates else math.nan,
            "reward/all_pass": all_sum / n_rates if n_rates else math.nan,
            "reward/rm_score": rm_sum / n_rm if n_rm else math.nan,
            "reward/dropped": dropped,
            "reward/dropped_total": self.totals["dropped"],
            "reward/hacked": int(hacked),
            "reward/hacked_total": self.totals["hacked"],
            **{f"hacks/{flag.lower()}": int(c) for flag, c in zip(FLAGS, per_flag, strict=True)},
            "policy/kl": kl / tokens if tokens else 0.0,
            "policy/entropy": ent / micro,
            "policy/loss": loss / micro,
            "policy/clip_fraction": clip / micro,
            "response/length": length / n,
            "lr": float(self.engine.get_lr()[0]),
            "time/step": step_s / w,
            "time/generate": gen_s / w,
            "time/reward_wait": wait_s / w,
            "time/update": upd_s / w,
            "time/weight_sync": sync_s / w,
            "time/reward_wait_share": wait_share / w,
        }
        assert self.log is not None
        self.log.write(row)
        return row

    # -- the loop ---------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        c = self.config
        started = time.monotonic()
        history: list[dict[str, Any]] = []
        bar = Progress(c.steps - self.step, c.progress and self.rank == 0, unit="step",
                       what="RL steps")
        try:
            while self.step < c.steps:
                row = self.train_step()
                history.append(row)
                bar.update()
                if self.rank == 0:
                    logger.info("step %d/%d: reward %.3f, pass rate %.3f, KL %.4f, %.1f s "
                                "(%.1f%% waiting on rewards)", row["step"], c.steps,
                                row["reward/mean"], row["reward/pass_rate"], row["policy/kl"],
                                row["time/step"], 100 * row["time/reward_wait_share"])
                if (c.save_every and self.step % c.save_every == 0) or self.step == c.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
        return {"steps": self.step, "history": history, "totals": dict(self.totals),
                "seconds": time.monotonic() - started}

    def save_policy(self) -> Path | None:
        """Rank 0 writes the policy where `--model DIR` (or any transformers code) loads it."""
        import deepspeed

        out = self.config.output / "policy"
        params = list(self.engine.module.parameters())
        with deepspeed.zero.GatheredParameters(params, enabled=self.config.zero_stage == 3):
            if self.rank == 0:
                self.engine.module.save_pretrained(str(out), safe_serialization=True)
                self.tokenizer.save_pretrained(str(out))
                return out
        return None

    def cleanup(self) -> None:
        if self.rewards is not None:
            self.rewards.close()
        if self.vllm is not None:
            self.vllm.close()
            shutil.rmtree(self.config.output / ".rollout-weights", ignore_errors=True)
        if self.log is not None:
            self.log.close()
        base.destroy(self.engine, getattr(self, "reference", None))


def run(config: RLTrainConfig) -> dict[str, Any]:
    trainer = RLTrainer(config)
    try:
        trainer.setup()
        result = trainer.train()
        if config.save_policy:
            trainer.save_policy()
    finally:
        trainer.cleanup()
    return result
