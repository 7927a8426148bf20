"""The transformers scoring engine: batched forwards that compute each shared prefix once.

A trainer sends K samples per prompt, and a chat template puts the same system prompt,
question and assistant header in front of every one of them. A causal model's keys and
values for those prefix tokens do not depend on what follows, so the engine computes them
once per distinct prefix (kept in a byte-bounded LRU across batches) and runs only the
response tokens of each item, attending to its prefix's cached keys. Mathematically that is
the plain forward; numerically it agrees to ~1e-6 in fp32 (the tests hold it to 1e-4).

A batch of items with different prefixes runs as one forward: prefixes are laid side by side
in a right-padded key/value block, and the attention mask hides each row's padding.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from .models import BatchStats, Encoded, RewardModel

Prefix = tuple[int, ...]
LayerKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (1, heads, P, dim)


class PrefixCache:
    """Keys and values of prefixes, least recently used dropped first, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Prefix, tuple[LayerKV, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Prefix) -> LayerKV | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Prefix, kv: LayerKV) -> None:
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = (kv, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped

    def __len__(self) -> int:
        return len(self._entries)


class TransformersEngine:
    """Scores encoded items with a loaded RewardModel. `score` is thread-safe: the batcher
    may run several batches at once on different threads (lanes)."""

    def __init__(self, model: RewardModel, *, prefix_cache_bytes: int = 256 << 20) -> None:
        self.model = model
        self.device = model.description.device
        self.cache = PrefixCache(prefix_cache_bytes)
        self.reuse_prefixes = model.decoder and prefix_cache_bytes > 0

    def score(self, items: Sequence[Encoded], stats: BatchStats | None = None) -> list[float]:
        stats = stats if stats is not None else BatchStats()
        stats.items += len(items)
        stats.real_tokens += sum(len(e.ids) for e in items)
        if not self.reuse_prefixes:
            stats.tokens += len(items) * max(len(e.ids) for e in items)
            stats.useful_tokens += sum(len(e.ids) for e in items)
            return self.model.forward_full(list(items))
        with torch.inference_mode():
            prefixes = self._prefixes(items, stats)
            return self._score_responses(items, prefixes, stats)

    # -- prefixes -------------------------------------------------------------------------

    def _prefixes(self, items: Sequence[Encoded], stats: BatchStats) -> dict[Prefix, LayerKV]:
        found: dict[Prefix, LayerKV] = {}
        missing: list[Prefix] = []
        for e in items:
            key = e.prefix
            if not key or key in found or key in missing:
                continue
            kv = self.cache.get(key)
            if kv is None:
                missing.append(key)
                stats.prefix_misses += 1
            else:
                found[key] = kv
                stats.prefix_hits += 1
        if missing:
            found.update(self._compute_prefixes(missing, stats))
        return found

    def _compute_prefixes(self, keys: list[Prefix], stats: BatchStats) -> dict[Prefix, LayerKV]:
        m = self.model
        width = max(len(k) for k in keys)
        ids = torch.full((len(keys), width), m.pad_id, dtype=torch.long)
        mask = torch.zeros((len(keys), width), dtype=torch.long)
        for i, k in enumerate(keys):
            ids[i, :len(k)] = torch.tensor(k)
            mask[i, :len(k)] = 1
        out = m.backbone(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         use_cache=True)
        stats.tokens += len(keys) * width
        stats.useful_tokens += sum(len(k) for k in keys)
        layers = _cache_layers(out.past_key_values)
        result: dict[Prefix, LayerKV] = {}
        for i, k in enumerate(keys):
            n = len(k)
            kv = [(key[i:i + 1, :, :n].clone(), value[i:i + 1, :, :n].clone())
                  for key, value in layers]
            self.cache.put(k, kv)
            result[k] = kv
        return result

    # -- responses ------------------------------------------------------------------------

    def _score_responses(self, items: Sequence[Encoded], prefixes: dict[Prefix, LayerKV],
                         stats: BatchStats) -> list[float]:
        from transformers import DynamicCache

        m = self.model
        n = len(items)
        plen = max(e.prefix_len for e in items)
        rlen = max(e.response_len for e in items)
        stats.tokens += n * rlen
        stats.useful_tokens += sum(e.response_len for e in items)
        ids = torch.full((n, rlen), m.pad_id, dtype=torch.long)
        mask = torch.zeros((n, plen + rlen), dtype=torch.long)
        positions = torch.zeros((n, rlen), dtype=torch.long)
        for i, e in enumerate(items):
            r = e.ids[e.prefix_len:]
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :e.prefix_len] = 1
            mask[i, plen:plen + len(r)] = 1
            positions[i] = torch.arange(e.prefix_len, e.prefix_len + rlen)
        past = None
        if plen:
            template = next(iter(prefixes.values()))
            past = DynamicCache(config=m.backbone.config)
            for layer, (k0, v0) in enumerate(template):
                keys = k0.new_zeros((n, k0.shape[1], plen, k0.shape[3]))
                values = v0.new_zeros((n, v0.shape[1], plen, v0.shape[3]))
                for i, e in enumerate(items):
                    if e.prefix_len:
                        k, v = prefixes[e.prefix][layer]
                        keys[i, :, :e.prefix_len] = k[0]
                        values[i, :, :e.prefix_len] = v[0]
                past.update(keys, values, layer)
        out = m.backbone(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device), past_key_values=past,
            cache_position=torch.arange(plen, plen + rlen, device=self.device), use_cache=False)
        hidden = out.last_hidden_state
        last = torch.tensor([e.response_len - 1 for e in items], device=hidden.device)
        picked = hidden[torch.arange(n, device=hidden.device), last]
        return m.head(picked).squeeze(-1).float().tolist()


def _cache_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer from a transformers cache object, old or new API."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return [(cache.key_cache[i], cache.value_cache[i]) for i in range(len(cache.key_cache))]
