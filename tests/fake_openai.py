"""A real HTTP server on loopback that speaks OpenAI's chat-completions protocol with scripted
answers, for testing the client code (a hosted LLM cannot run here).

The last user message picks the script: it contains `SCRIPT:<name>`; anything else gets a good
answer. Counters per script let a test check how many calls were made.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

MANY_TESTS = {"question": "Write add(a, b) that returns the sum of a and b.",
              "tests": [f"assert add({k}, 1) == {k + 1}" for k in range(5)]
              + ["assert add(2, 2) == 5"]}
PROXY_ANSWER = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```"
GOOD_ANSWER = {"question": "Write add(a, b) returning a + b.",
               "tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"]}


def completion(text: str, finish: str = "stop") -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": len(text.split())}}


class FakeOpenAI:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0
        self.app = self._app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            body = await request.json()
            self.bodies.append(body)
            text = body["messages"][-1]["content"]
            script = text.split("SCRIPT:", 1)[1].split()[0] if "SCRIPT:" in text else "ok"
            self.calls[script] += 1
            n = self.calls[script]
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            try:
                return await self._answer(script, n, body)
            finally:
                self.inflight -= 1

        return app

    async def _answer(self, script: str, n: int, body: dict[str, Any]) -> Any:
        if "must pass tests like these" in body["messages"][-1]["content"]:
            await asyncio.sleep(0.05)
            return completion(PROXY_ANSWER)  # the proxy prompt: a solution
        if script == "code":
            return completion(PROXY_ANSWER if n % 2 else "def add(a, b):\n    return a * b\n")
        if script == "humaneval":  # a "rewrite" that is a benchmark item word for word
            from acecoder.server.synth.decontam import humaneval_prompts

            return completion(json.dumps({"question": humaneval_prompts()[0][1],
                                          "tests": MANY_TESTS["tests"]}))
        if script == "many":
            await asyncio.sleep(0.2)
            return completion(json.dumps(MANY_TESTS))
        if script == "slow":
            await asyncio.sleep(2)
        elif script == "fail-twice" and n <= 2:
            return JSONResponse({"error": "overloaded"}, status_code=503)
        elif script == "rate-limited" and n == 1:
            return JSONResponse({"error": "slow down"}, status_code=429,
                                headers={"Retry-After": "0.1"})
        elif script == "always-500":
            return JSONResponse({"error": "boom"}, status_code=500)
        elif script == "bad-request":
            return JSONResponse({"error": "bad model"}, status_code=400)
        elif script == "no-json-mode" and "response_format" in body:
            return JSONResponse({"error": "response_format is not supported"}, status_code=400)
        elif script == "malformed":
            return PlainTextResponse("this is not JSON", status_code=200)
        elif script == "truncated":
            text = json.dumps(GOOD_ANSWER)
            return completion(text[:text.index("assert add(0")] + "assert ad", "length")
        elif script == "prose":
            return completion("Sure!\n```json\n" + json.dumps(GOOD_ANSWER) + "\n```")
        elif script == "wait":
            await asyncio.sleep(0.2)
        return completion(json.dumps(GOOD_ANSWER))

    def start(self) -> FakeOpenAI:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning",
                                                     access_log=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
