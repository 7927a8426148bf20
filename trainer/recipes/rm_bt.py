"""`acecoder train rm`: the Bradley-Terry reward-model trainer, on DeepSpeed.

Reads top to bottom: setup (data, model, engine), train (epochs of micro-batches; the loss
is -log sigmoid(r(x, y+) - r(x, y-))), evaluate (held-out pairwise accuracy), save (the
format the RM server loads, with a model card). One process, or many under torchrun / the
deepspeed launcher; ZeRO 0-3 from the config; fp32 on CPU, bf16 on GPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from acecoder.jsonl import Progress
from acecoder.trainer import distributed, rm_data, rm_model
from acecoder.trainer.losses import bradley_terry_loss, cosine_with_warmup, pairwise_accuracy
from acecoder.trainer.recipes import base

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RMTrainConfig:
    data: Path
    """Pairs (AceCodePair JSONL) or AceCode-87K records with inferences (paired on the fly)."""
    output: Path
    """Where the trained reward model goes (served with `acecoder serve rm --model DIR`)."""
    model: str = "embedded:smollm2-135m"
    """Init: AceCode-RM, a one-label classifier, or a causal LM (gets a new head)."""
    eval_data: Path | None = None
    """Held-out pairs; without it, `eval_fraction` of the questions are held out."""
    eval_fraction: float = 0.1
    epochs: int = 1
    lr: float = 1e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    global_batch: int = 128
    """Pairs per optimizer step, over all processes (micro-batches are accumulated)."""
    micro_batch: int = 4
    """Pairs per forward pass per process."""
    max_length: int = 2048
    zero_stage: int = 0
    dtype: str = "auto"
    """'auto': bfloat16 on GPU, float32 on CPU."""
    device: str = "auto"
    gradient_checkpointing: bool = False
    head_only: bool = False
    """Train the scalar head alone on the frozen backbone's features (fast: no backward
    through the backbone)."""
    grad_clip: float = 1.0
    eval_every: int = 0
    """Evaluate every N optimizer steps (0: at the end of each epoch)."""
    seed: int = 0
    deepspeed_config: Path | None = None
    """A DeepSpeed JSON whose values win over the ones made here (batch sizes excepted)."""
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "global_batch", "micro_batch", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"dtype must be auto, float32 or bfloat16, got {self.dtype!r}")

    @classmethod
    def from_preset(cls, preset: Path | None, **kw: Any) -> RMTrainConfig:
        """A preset JSON's values, then `kw` (None values ignored) on top."""
        return cls(**base.preset_values(cls, preset, kw, paths=(
            "data", "output", "eval_data", "deepspeed_config")))


@dataclass(frozen=True)
class FeaturePair:
    """A pair as the frozen backbone's features at each item's scoring token."""
    chosen: torch.Tensor
    rejected: torch.Tensor


class HeadOnly(torch.nn.Module):
    """The value head alone, on cached features (decoders with `head_only`): the backbone
    runs once per distinct item instead of once per item per epoch."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).squeeze(-1)


class RMTrainer:
    def __init__(self, config: RMTrainConfig) -> None:
        self.config = config
        self.log: base.MetricsLog | None = None

    # -- setup ------------------------------------------------------------------------------

    def setup(self) -> None:
        import deepspeed

        c = self.config
        self.rank, self.world, local = distributed.ensure_env()
        device, dtype = base.placement(c.device, c.dtype, local)
        self.device = device
        torch.manual_seed(c.seed)

        pairs = rm_data.read_pairs(c.data)
        if c.eval_data is not None:
            train, held = pairs, rm_data.read_pairs(c.eval_data)
        else:
            train, held = rm_data.split(pairs, c.eval_fraction)
        per_step = c.micro_batch * self.world
        if len(train) < per_step:
            raise ValueError(f"{len(train)} training pairs in {c.data}: fewer than one "
                             f"micro-batch per process ({c.micro_batch} x {self.world})")
        self.grad_accum = max(1, c.global_batch // per_step)
        self.rm = rm_model.load_for_training(
            c.model, max_length=c.max_length, device=device, dtype="float32",
            gradient_checkpointing=c.gradient_checkpointing, seed=c.seed,
            head_only=c.head_only)
        self.train_pairs: list[Any] = rm_data.encode(self.rm, train)
        self.held_pairs: list[Any] = rm_data.encode(self.rm, held)
        self.cached = c.head_only and self.rm.decoder
        if self.cached:
            self.train_pairs, self.held_pairs = self._features(self.train_pairs, self.held_pairs)
        micro_steps = rm_data.steps_per_epoch(len(train), c.micro_batch, self.world)
        self.total_steps = max(1, c.epochs * micro_steps // self.grad_accum)
        warmup = int(c.warmup_ratio * self.total_steps)

        module = HeadOnly(self.rm.head) if self.cached else rm_model.TrainableRM(self.rm)
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_with_warmup(s, total=self.total_steps, warmup=warmup))
        ds = distributed.ds_config(micro_batch=c.micro_batch, grad_accum=self.grad_accum,
                                   world=self.world, zero_stage=c.zero_stage,
                                   bf16=dtype == "bfloat16", grad_clip=c.grad_clip,
                                   overrides=c.deepspeed_config)
        self.engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer,
                                                    lr_scheduler=schedule, config=ds)
        self.log = base.MetricsLog(c.output, self.rank)
        if self.rank == 0:
            logger.info("training %s on %d pairs (%d held out), %d optimizer steps of %d "
                        "pairs, %d process(es), ZeRO %d, %s", c.model, len(train), len(held),
                        self.total_steps, per_step * self.grad_accum, self.world,
                        c.zero_stage, dtype)

    # -- the loop ---------------------------------------------------------------------------

    @torch.no_grad()
    def _features(self, *sets: list[rm_data.EncodedPair]) -> list[list[FeaturePair]]:
        """Each pair set as FeaturePairs: the backbone once per distinct item, shortest first
        (little padding), a progress bar for the long part."""
        distinct: dict[tuple[int, ...], Any] = {}
        for pairs in sets:
            for p in pairs:
                for item in (p.chosen, p.rejected):
                    distinct.setdefault(item.ids, item)
        keys = sorted(distinct, key=len)
        feats: dict[tuple[int, ...], torch.Tensor] = {}
        size = max(1, self.config.micro_batch * 2)
        bar = Progress(len(keys), self.config.progress and self.rank == 0, unit="item",
                       what="items through the frozen backbone")
        backbone = self.rm.backbone
        backbone.eval()
        try:
            for k in range(0, len(keys), size):
                chunk = keys[k:k + size]
                batch = self.rm.pad([distinct[key] for key in chunk])
                hidden = backbone(input_ids=batch["input_ids"],
                                  attention_mask=batch["attention_mask"]).last_hidden_state
                rows = torch.arange(hidden.shape[0], device=hidden.device)
                for key, f in zip(chunk, hidden[rows, batch["last"]], strict=True):
                    feats[key] = f.clone()
                bar.update(len(chunk))
        finally:
            bar.close()
        return [[FeaturePair(feats[p.chosen.ids], feats[p.rejected.ids])
                 for p in pairs] for pairs in sets]

    def _scores(self, batch: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cached:
            scores = self.engine(torch.stack([p.chosen for p in batch]
                                             + [p.rejected for p in batch])).float()
        else:
            padded = self.rm.pad([p.chosen for p in batch] + [p.rejected for p in batch])
            scores = self.engine(**padded).float()
        return scores[:len(batch)], scores[len(batch):]

    def train(self) -> dict[str, Any]:
        c = self.config
        started = time.monotonic()
        history: list[dict[str, Any]] = []
        assert self.log is not None
        bar = Progress(self.total_steps, c.progress and self.rank == 0, unit="step",
                       what="optimizer steps")
        losses: list[float] = []
        accs: list[float] = []
        last_eval: dict[str, Any] = {}
        try:
            for epoch in range(c.epochs):
                for batch in rm_data.batches(self.train_pairs, c.micro_batch, seed=c.seed,
                                             epoch=epoch, rank=self.rank, world=self.world):
                    if self.engine.global_steps >= self.total_steps:
                        break
                    self.engine.train()
                    chosen, rejected = self._scores(batch)
                    loss = bradley_terry_loss(chosen, rejected)
                    self.engine.backward(loss)
                    boundary = self.engine.is_gradient_accumulation_boundary()
                    self.engine.step()
                    losses.append(float(loss.detach()))
                    accs.append(pairwise_accuracy(chosen.detach(), rejected.detach()))
                    if not boundary:
                        continue
                    step = self.engine.global_steps
                    row = {"step": step, "epoch": epoch, "loss/train": sum(losses) / len(losses),
                           "accuracy/train": sum(accs) / len(accs),
                           "lr": self.engine.get_lr()[0],
                           "time/elapsed": time.monotonic() - started}
                    losses, accs = [], []
                    if c.eval_every and step % c.eval_every == 0:
                        last_eval = self.evaluate()
                        row.update(last_eval)
                    self.log.write(row)
                    history.append(row)
                    bar.update()
                if not c.eval_every:
                    last_eval = self.evaluate()
                    self.log.write({"step": self.engine.global_steps, "epoch": epoch, **last_eval})
        finally:
            bar.close()
        return {"steps": self.engine.global_steps, "history": history, **last_eval,
                "seconds": time.monotonic() - started}

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Held-out loss and pairwise accuracy (every process scores all held-out pairs: with
        ZeRO-3 each forward needs all of them)."""
        if not self.held_pairs:
            return {}
        self.engine.eval()
        chosen, rejected = [], []
        size = self.config.micro_batch
        for k in range(0, len(self.held_pairs), size):
            c, r = self._scores(self.held_pairs[k:k + size])
            chosen.append(c)
            rejected.append(r)
        cs, rs = torch.cat(chosen), torch.cat(rejected)
        return {"loss/eval": float(bradley_terry_loss(cs, rs)),
                "accuracy/eval": pairwise_accuracy(cs, rs), "eval/pairs": len(cs),
                "eval/margin": float((cs - rs).mean())}

    # -- save -------------------------------------------------------------------------------

    def save(self, result: dict[str, Any]) -> Path | None:
        """Rank 0 writes the model (ZeRO-3's partitioned weights gathered first)."""
        import deepspeed

        c = self.config
        card = {"data": str(c.data), "pairs (train)": len(self.train_pairs),
                "pairs (held out)": len(self.held_pairs), "optimizer steps": result["steps"],
                "pairs per step": c.micro_batch * self.world * self.grad_accum,
                "trained": "the head alone (backbone frozen)" if c.head_only else "all weights",
                "lr": c.lr, "epochs": c.epochs, "max length": c.max_length,
                "held-out pairwise accuracy": result.get("accuracy/eval"),
                "held-out loss": result.get("loss/eval")}
        params = list(self.engine.module.parameters())
        with deepspeed.zero.GatheredParameters(params, enabled=c.zero_stage == 3):
            if self.rank == 0:
                return rm_model.save(self.rm, c.output, card=card)
        return None

    def cleanup(self) -> None:
        if self.log is not None:
            self.log.close()
        base.destroy(getattr(self, "engine", None))


def run(config: RMTrainConfig) -> dict[str, Any]:
    trainer = RMTrainer(config)
    trainer.setup()
    try:
        result = trainer.train()
        trainer.save(result)
    finally:
        trainer.cleanup()
    return result
