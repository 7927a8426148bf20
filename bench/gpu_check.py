#!/usr/bin/env python3
"""The RM server's GPU paths in one run (bench/gpu_check.sh calls this): under 10 minutes on
one GPU, one table written to a file.

Steps, each a row of the table (a step that cannot run says why in its row, and the run goes
on):

1. `fp32 reference`: every item scored alone, fp32, plain forward (the scoring rule).
2. `transformers <dtype> <engine>`: the transformers backend (bf16 by default) in each engine
   mode (`packed`, `batched`), scoring the same items as the server does (dynamic batches of
   shared prefixes); its largest difference from (1) must be within the tolerance (1e-2 for
   bf16/fp16, 1e-3 for fp32). Beside it: the largest difference of the calibrated reward
   (sigmoid of the calibrated score, what `mix` and the gateway's `scores` hand a trainer), and
   how often two samples of one question keep fp32's order (what a policy gradient sees).
3. `vllm <dtype>`: the vLLM backend (CUDA on a GPU), the same items and tolerance.
4. `rm_bench samples`: `bench/rm_bench.py --traffic samples` against the baseline, on the
   same device, its table appended to the file.

`--device cpu` runs the same steps on the CPU (what CI does, small): the script's own
plumbing, argument handling and table are proven without a GPU.

What to expect in bf16: a raw score is itself a bf16 number, and bf16 spaces its values 0.125
apart between 16 and 32 and 0.25 apart between 32 and 64, where the embedded model's raw
scores lie; on the CPU its bf16 scores differ from fp32 by up to about 1 (2 in the packed
engine) and the 1e-2 tolerance is out of reach for this model. The order and calibrated-reward
columns say whether that matters for training.

    python bench/gpu_check.py --out gpu_check.txt                  # on a GPU machine
    python bench/gpu_check.py --device cpu --items 16 --skip vllm,bench --out /tmp/t.txt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("transformers", "vllm", "bench")
TOLERANCE = {"float32": 1e-3, "bfloat16": 1e-2, "float16": 1e-2}


def items(n: int) -> list[tuple[str, str]]:
    """n (question, response) pairs of RL-like traffic: the committed policy samples."""
    out = []
    with (ROOT / "bench" / "data" / "rl_samples.jsonl").open() as f:
        for line in f:
            r = json.loads(line)
            out.append((r["question"], r["response"]))
            if len(out) == n:
                break
    return out


def model_calibration(model: str) -> Any:
    """The calibration the RM server would serve the model with (None without one)."""
    from acecoder.models import calibration
    from acecoder.models.reward import resolve

    return calibration.for_model(model, str(resolve(model)), head_trained=True)


def reward_diff(calibration: Any, scores: list[float], ref: list[float]) -> float:
    """Largest difference of the calibrated reward p = sigmoid(scale * raw + shift)."""
    return max(abs(calibration.probability(a) - calibration.probability(b))
               for a, b in zip(scores, ref, strict=True))


def order_agreement(scores: list[float], ref: list[float], group: int = 8) -> float:
    """Of the pairs of samples of one question (consecutive groups of `group`) that fp32
    tells apart, the share ordered the same way."""
    same = total = 0
    for g in range(0, len(ref), group):
        idx = range(g, min(g + group, len(ref)))
        for i in idx:
            for j in idx:
                if i < j and ref[i] != ref[j]:
                    total += 1
                    same += (scores[i] - scores[j]) * (ref[i] - ref[j]) > 0
    return same / total if total else 1.0


def reference(model: str, device: str, pairs: list[tuple[str, str]]) -> list[float]:
    """Each item alone, fp32, plain forward: the scoring rule."""
    from acecoder.models import reward as models

    m = models.load(model, dtype="float32", device=device)
    encoded = [m.encode(q, r) for q, r in pairs]
    return [m.forward_full([e])[0] for e in encoded]


def backend_scores(model: str, backend: str, device: str, dtype: str, engine: str,
                   pairs: list[tuple[str, str]]) -> tuple[list[float], float, str]:
    """Scores of the server's own backend (in batches of 8 items that share a question, as a
    trainer's samples arrive), seconds, and the dtype it ran in."""
    from acecoder.models.reward import BatchStats
    from acecoder.server.rm.config import RewardConfig
    from acecoder.server.rm.service import load_backend

    config = RewardConfig(model=model, backend=backend, device=device, dtype=dtype,
                          engine=engine, lanes=1)
    b = load_backend(config)
    try:
        encoded = [b.encode(q, r) for q, r in pairs]
        b.score(encoded[:8], BatchStats())  # warm-up (CUDA kernels, graphs)
        if backend == "transformers":
            b.engine.blocks = type(b.engine.blocks)(b.engine.blocks.max_bytes)  # cold cache
            b.engine.cache = type(b.engine.cache)(b.engine.cache.max_bytes)
        started = time.perf_counter()
        scores: list[float] = []
        for k in range(0, len(encoded), 8):
            scores += b.score(encoded[k:k + 8], BatchStats())
        return scores, time.perf_counter() - started, b.description.dtype
    finally:
        b.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="where the table is written")
    ap.add_argument("--device", default="cuda", help="cuda[:N], or cpu for a dry run "
                    "(default: %(default)s)")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(TOLERANCE),
                    help="the backends' dtype (default: %(default)s)")
    ap.add_argument("--model", default="embedded:smollm2-135m", help="default: %(default)s")
    ap.add_argument("--items", type=int, default=256,
                    help="items scored by each backend (default: %(default)s)")
    ap.add_argument("--requests", type=int, default=512,
                    help="rm_bench requests per level (default: %(default)s)")
    ap.add_argument("--skip", default="", help=f"steps to leave out, of {','.join(STEPS)}")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if skip - set(STEPS):
        ap.error(f"--skip: unknown step(s) {sorted(skip - set(STEPS))}; choose from "
                 f"{','.join(STEPS)}")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        ap.error(f"--device: cpu or cuda[:N], got {args.device!r}")
    if not 8 <= args.items <= 512 or args.items % 8:
        ap.error(f"--items: a multiple of 8 from 8 to 512, got {args.items}")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: --device {args.device} but torch {torch.__version__} sees no CUDA "
              "device (a CPU build, or no driver): install a CUDA build of torch, or pass "
              "--device cpu for a dry run", file=sys.stderr)
        return 2
    where = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
             else "cpu")
    lines = [f"# gpu_check: {where}, torch {torch.__version__}, model {args.model}, "
             f"{args.items} items", ""]
    rows: list[list[str]] = []
    failed = False
    pairs = items(args.items)
    started = time.perf_counter()
    ref = reference(args.model, args.device, pairs)
    rows.append(["fp32 reference (one item per forward)", "float32",
                 f"{len(pairs) / (time.perf_counter() - started):.1f}", "-", "-", "ok", "-",
                 "-"])
    calibration = model_calibration(args.model)
    runs = []
    if "transformers" not in skip:
        runs += [("transformers", engine) for engine in ("packed", "batched")]
    if "vllm" not in skip:
        runs.append(("vllm", "auto"))
    tol = TOLERANCE[args.dtype]
    for backend, engine in runs:
        name = f"{backend} {args.dtype}" + (f" {engine}" if backend == "transformers" else "")
        try:
            scores, seconds, dtype = backend_scores(args.model, backend, args.device, args.dtype,
                                                    engine, pairs)
        except Exception as exc:  # a step that cannot run says why, the others go on
            failed = True
            rows.append([name, args.dtype, "-", "-", "-", f"FAILED: {exc!r}"[:200]])
            continue
        diff = max(abs(a - b) for a, b in zip(scores, ref, strict=True))
        ok = diff <= tol
        failed |= not ok
        rows.append([name, dtype, f"{len(pairs) / seconds:.1f}", f"{diff:.1e}", f"{tol:.0e}",
                     "ok" if ok else "OVER TOLERANCE",
                     f"{reward_diff(calibration, scores, ref):.1e}" if calibration else "-",
                     f"{order_agreement(scores, ref):.1%}"])
    head = ["step", "dtype", "items/s", "max |Δ| vs fp32", "tolerance", "result",
            "max |Δ reward|", "same order"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    if "bench" not in skip:
        cmd = [sys.executable, str(ROOT / "bench" / "rm_bench.py"), "--traffic", "samples",
               "--concurrency", "64", "--requests", str(args.requests), "--device", args.device,
               "--dtype", args.dtype,
               # on the CPU (a dry run) the vLLM backend was proven in its own step above
               "--skip", "http" + (",vllm" if "vllm" in skip or args.device == "cpu" else ""),
               "--json", str(args.out.with_suffix(".json"))]
        bench = subprocess.run(cmd, capture_output=True, text=True, timeout=420, check=False)
        with args.out.open("a") as f:
            f.write(f"\n# {' '.join(cmd[1:])}\n{bench.stdout}")
            if bench.returncode:
                failed = True
                f.write(f"rm_bench exited {bench.returncode}: {bench.stderr[-2000:]}\n")
        print(bench.stdout, flush=True)
    print(f"table written to {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
