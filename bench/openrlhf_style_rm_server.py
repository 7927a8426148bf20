#!/usr/bin/env python3
"""The baseline of `rm_bench.py`: a reward server the way OpenRLHF's `serve_rm.py` is built.

A FastAPI app whose `async` handler tokenizes the posted (already chat-templated) queries and
runs one forward pass for them right there, blocking the event loop, so concurrent requests
never share a batch. Same model and scoring rule as acecoder (backbone + head at the last
token, fp32, every core for torch). `GET /health` answers once it listens. Written for the
benchmark; not part of the package.

    python bench/openrlhf_style_rm_server.py --model embedded:smollm2-135m --port 0
"""

from __future__ import annotations

import argparse
import socket

import torch
import uvicorn
from fastapi import FastAPI, Request

from acecoder.models import reward as models


def build_app(model: models.RewardModel) -> FastAPI:
    app = FastAPI()
    tok = model.tokenizer
    device = model.description.device

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/get_reward")
    async def get_reward(request: Request) -> dict[str, list[float]]:
        data = await request.json()
        rewards = []
        for query in data["query"]:
            ids = tok(query, add_special_tokens=False)["input_ids"][-model.max_length:]
            with torch.inference_mode():
                ids_t = torch.tensor([ids], device=device)
                hidden = model.backbone(input_ids=ids_t).last_hidden_state
                rewards.append(float(model.head(hidden[:, -1]).item()))
        return {"rewards": rewards}

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (fp32 either way)")
    args = ap.parse_args()
    model = models.load(args.model, dtype="float32", device=args.device)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"baseline listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(build_app(model), log_level="warning",
                                           access_log=False))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
