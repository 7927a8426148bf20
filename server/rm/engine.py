"""The transformers scoring engine: forwards that never compute a shared prefix twice.

A trainer sends K samples per prompt, and a chat template puts the same system prompt,
question and assistant header in front of every one of them; samples of one prompt often
open the same way too. A causal model's keys and values for a token prefix do not depend on
what follows, so they can be computed once and reused. Mathematically that is the plain
forward; numerically it agrees to ~1e-6 in fp32 (the tests hold it to 1e-4). Two ways:

- `packed` (the CPU default): each item starts from the longest block-aligned prefix of its
  tokens that an earlier item left in the `BlockCache` (like vLLM's automatic prefix
  caching, 8-token blocks); the remaining tokens of several items are packed into ONE row,
  with a block-diagonal attention mask over their cached prefixes, so a forward has wide
  matrices (a CPU runs 32-row matmuls at half the speed of 256-row ones, measured here) and
  not one padding token.
- `batched` (the GPU default, where padding is cheap and width is everything): each
  distinct question prefix once, then every item's response tokens in one right-padded
  forward that attends to its own prefix in a padded key/value block.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from acecoder.models.reward import BatchStats, Encoded, RewardModel

Prefix = tuple[int, ...]
LayerKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (1, heads, P, dim)


def _size(kv: LayerKV) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


class _LruBytes:
    """Entries of keys and values, bounded in bytes, least recently used dropped first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Prefix, tuple[LayerKV, int]] = OrderedDict()
        self._lock = threading.Lock()

    def _add(self, key: Prefix, kv: LayerKV, size: int) -> bool:
        """Add an entry (caller holds the lock); False when the key is there already."""
        if key in self._entries:
            return False
        self._entries[key] = (kv, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            old, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped
            self._dropped(old)
        return True

    def _dropped(self, key: Prefix) -> None:
        """Hook: an entry left to make room."""

    def __len__(self) -> int:
        return len(self._entries)


class PrefixCache(_LruBytes):
    """Keys and values of prefixes, least recently used dropped first, bounded in bytes."""

    def get(self, key: Prefix) -> LayerKV | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Prefix, kv: LayerKV) -> None:
        size = _size(kv)
        if size > self.max_bytes:
            return
        with self._lock:
            self._add(key, kv, size)


class BlockCache(_LruBytes):
    """Keys and values of token prefixes, found by the longest block-aligned prefix of a
    sequence. Entries are whole sequences (rounded down to a block); an index maps every
    block boundary of an entry to it. Least recently used entries go first."""

    def __init__(self, max_bytes: int, block: int = 8) -> None:
        super().__init__(max_bytes)
        self.block = block
        self._index: dict[Prefix, Prefix] = {}

    def longest_entry(self, ids: Sequence[int]) -> tuple[int, Prefix | None, LayerKV | None]:
        """(n, key, kv): the cached entry `key` whose keys and values `kv` begin with the
        first n tokens of `ids`; n < len(ids), so that at least the last token is left to
        compute (its hidden state gives the score). (0, None, None) when nothing is cached."""
        with self._lock:
            for k in range((len(ids) - 1) // self.block, 0, -1):
                n = k * self.block
                owner = self._index.get(tuple(ids[:n]))
                if owner is not None:
                    self._entries.move_to_end(owner)
                    return n, owner, self._entries[owner][0]
        return 0, None, None

    def put(self, ids: Sequence[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        n = (len(ids) // self.block) * self.block
        if n == 0:
            return
        key = tuple(ids[:n])
        kv = [(k[:, :, :n].contiguous(), v[:, :, :n].contiguous()) for k, v in layers]
        size = _size(kv)
        if size > self.max_bytes:
            return
        with self._lock:
            if self._add(key, kv, size):
                for m in range(self.block, n + 1, self.block):
                    self._index.setdefault(key[:m], key)

    def _dropped(self, key: Prefix) -> None:
        for m in range(self.block, len(key) + 1, self.block):
            if self._index.get(key[:m]) == key:
                del self._index[key[:m]]


class TransformersEngine:
    """Scores encoded items with a loaded RewardModel. `score` is thread-safe: the batcher
    may run several batches at once on different threads (lanes)."""

    def __init__(self, model: RewardModel, *, prefix_cache_bytes: int = 256 << 20,
                 packed: bool | None = None, pack_tokens: int = 256) -> None:
        """`packed`: True for `packed`, False for `batched`, None for the device's default
        (packed on CPU, batched on GPU)."""
        self.model = model
        self.device = model.description.device
        self.reuse_prefixes = model.decoder and prefix_cache_bytes > 0
        self.packed = (self.device == "cpu") if packed is None else packed
        self.pack_tokens = pack_tokens
        self.cache = PrefixCache(prefix_cache_bytes)
        self.blocks = BlockCache(prefix_cache_bytes)

    def score(self, items: Sequence[Encoded], stats: BatchStats | None = None) -> list[float]:
        stats = stats if stats is not None else BatchStats()
        stats.items += len(items)
        stats.real_tokens += sum(len(e.ids) for e in items)
        if not self.reuse_prefixes:
            stats.tokens += len(items) * max(len(e.ids) for e in items)
            stats.useful_tokens += sum(len(e.ids) for e in items)
            t = time.perf_counter()
            scores = self.model.forward_full(list(items))
            stats.timed("forward", t)
            return scores
        with torch.inference_mode():
            if self.packed:
                return self._score_packed(items, stats)
            t = time.perf_counter()
            prefixes = self._prefixes(items, stats)
            stats.timed("prefix_lookup", t)  # the cache's misses computed included
            return self._score_responses(items, prefixes, stats)

    # -- packed: cached prefixes, new tokens of several items in one row -----------------

    def _score_packed(self, items: Sequence[Encoded], stats: BatchStats) -> list[float]:
        scores: dict[int, float] = {}
        # Items in token order: those that share a prefix come together. An item that
        # shares clearly more with its predecessor than the cache holds yet waits for the
        # next round, when the predecessor's keys and values are cached (a few rounds at most).
        pending = sorted(range(len(items)), key=lambda i: items[i].ids)
        for round_ in range(4):
            deferred: list[int] = []
            pack: list[tuple[int, int, Prefix | None, LayerKV | None]] = []
            size = 0
            previous: tuple[int, ...] = ()
            for i in pending:
                ids = items[i].ids
                t = time.perf_counter()
                n, key, kv = self.blocks.longest_entry(ids)
                stats.timed("prefix_lookup", t)
                shared = min(_common_prefix(previous, ids), len(ids) - 1)
                previous = ids
                if round_ < 3 and shared - n >= 2 * self.blocks.block:
                    deferred.append(i)
                    continue
                pack.append((i, n, key, kv))
                size += len(ids) - n
                if size >= self.pack_tokens:
                    scores.update(self._forward_pack(items, pack, stats))
                    pack, size = [], 0
            if pack:
                scores.update(self._forward_pack(items, pack, stats))
            pending = deferred
            if not pending:
                break
        return [scores[i] for i in range(len(items))]

    def _forward_pack(self, items: Sequence[Encoded],
                      pack: list[tuple[int, int, Prefix | None, LayerKV | None]],
                      stats: BatchStats) -> dict[int, float]:
        from transformers import DynamicCache

        m = self.model
        dev = self.device
        # Cached regions, each once, as long as the longest use of it.
        regions: dict[Prefix, tuple[LayerKV, int]] = {}
        for _, n, key, kv in pack:
            if key is not None and kv is not None:
                regions[key] = (kv, max(n, regions.get(key, (kv, 0))[1]))
        starts: dict[Prefix, int] = {}
        r_len = 0
        for key, (_, n) in regions.items():
            starts[key] = r_len
            r_len += n
        new_ids: list[int] = []
        positions: list[int] = []
        spans: list[tuple[int, int]] = []  # (start, length) of each item's new tokens
        for i, n, _, _ in pack:
            ids = items[i].ids
            spans.append((len(new_ids), len(ids) - n))
            new_ids.extend(ids[n:])
            positions.extend(range(n, len(ids)))
        t_len = len(new_ids)
        mask = torch.zeros((1, 1, t_len, r_len + t_len), dtype=torch.bool)
        for (i, n, key, _), (s0, length) in zip(pack, spans, strict=True):
            if key is not None and n:
                mask[0, 0, s0:s0 + length, starts[key]:starts[key] + n] = True
            block = torch.ones((length, length), dtype=torch.bool).tril_()
            mask[0, 0, s0:s0 + length, r_len + s0:r_len + s0 + length] = block
        t = time.perf_counter()
        past = DynamicCache(config=m.backbone.config)
        if regions:
            n_layers = len(next(iter(regions.values()))[0])
            for layer in range(n_layers):
                past.update(
                    torch.cat([kv[layer][0][:, :, :n] for kv, n in regions.values()], dim=2),
                    torch.cat([kv[layer][1][:, :, :n] for kv, n in regions.values()], dim=2),
                    layer)
        out = m.backbone(
            input_ids=torch.tensor([new_ids], device=dev), attention_mask=mask.to(dev),
            position_ids=torch.tensor([positions], device=dev), past_key_values=past,
            use_cache=True, cache_position=torch.arange(r_len, r_len + t_len, device=dev))
        stats.tokens += t_len
        stats.useful_tokens += t_len
        t = stats.timed("forward", t)
        lasts = torch.tensor([s0 + length - 1 for s0, length in spans], device=dev)
        values = m.head(out.last_hidden_state[0, lasts]).squeeze(-1).float().tolist()
        t = stats.timed("head", t)
        layers = _cache_layers(out.past_key_values)
        result: dict[int, float] = {}
        for (i, n, key, _), (s0, length), value in zip(pack, spans, values, strict=True):
            result[i] = value
            if key is not None and n:
                stats.prefix_hits += 1
                a = starts[key]
                kv = [(torch.cat([k[:, :, a:a + n], k[:, :, r_len + s0:r_len + s0 + length]], 2),
                       torch.cat([v[:, :, a:a + n], v[:, :, r_len + s0:r_len + s0 + length]], 2))
                      for k, v in layers]
            else:
                stats.prefix_misses += 1
                kv = [(k[:, :, r_len + s0:r_len + s0 + length],
                       v[:, :, r_len + s0:r_len + s0 + length]) for k, v in layers]
            self.blocks.put(items[i].ids, kv)
        stats.timed("prefix_store", t)
        return result

    # -- batched: question prefixes once, responses in one padded forward ------------------

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
        t = time.perf_counter()
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
        t = stats.timed("forward", t)
        last = torch.tensor([e.response_len - 1 for e in items], device=hidden.device)
        picked = hidden[torch.arange(n, device=hidden.device), last]
        scores = m.head(picked).squeeze(-1).float().tolist()
        stats.timed("head", t)
        return scores


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _cache_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer from a transformers cache object, old or new API."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return [(cache.key_cache[i], cache.value_cache[i]) for i in range(len(cache.key_cache))]
