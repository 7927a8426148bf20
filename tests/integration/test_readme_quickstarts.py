"""The README's trainer quickstarts, run as printed: each fenced block that follows a
`<!-- quickstart: NAME -->` marker in "Rewards for other people's trainers" is read from the
README here, so the two cannot drift.

The services block is started as written but on ports picked on loopback (every README
address, `localhost:50051` and so on, becomes the one the server got). A trainer's command
line is run by bash as written, with the trainer's module (`python -m openrlhf.cli...`,
`python -m verl.trainer.main_ppo`) swapped for a probe that records the arguments and
environment bash hands it (command substitutions, quoting and all); those then go through the
trainer's own reward loading and calling code. The TRL block is a whole script, run as it is,
with a tiny policy in place of the model it names."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acecoder.serving import spawn_server

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"<!-- quickstart: (\S+) -->\n```\w+\n(.*?)\n```", re.S)
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a * b\n```"  # passes neither test
PROBE = """import json, os, sys
with open(os.environ["QUICKSTART_PROBE"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items()
                                                      if k.startswith("ACECODER_")}}) + "\\n")
"""


def quickstarts() -> dict[str, str]:
    """NAME -> the fenced block under its marker, as the README prints it."""
    blocks = dict(BLOCK.findall(README.read_text(encoding="utf-8")))
    assert {"services", "trl", "openrlhf", "verl"} <= set(blocks), sorted(blocks)
    return blocks


def commands(block: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comments and blank lines out."""
    lines = block.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def localize(text: str, addresses: dict[str, str]) -> str:
    """`text` with each README address replaced by the one its server got here."""
    for readme, real in addresses.items():
        text = re.sub(re.escape(readme) + r"(?!\d)", real, text)
    return text


def settings(env: Any) -> dict[str, str]:
    """The ACECODER_* reward settings of an environment (the model cache is none)."""
    return {k: v for k, v in env.items() if k.startswith("ACECODER_") and k != "ACECODER_CACHE"}


def shell_env() -> dict[str, str]:
    """This environment, with this interpreter's `python` and `acecoder` first on PATH, and
    no ACECODER_* setting but what a block sets itself."""
    env = {k: v for k, v in os.environ.items() if k not in settings(os.environ)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def services(smol_dir: str) -> Iterator[dict[str, str]]:
    """The services block's servers, running: README address -> real address. (`smol_dir`:
    the embedded RM, the `serve rm` default, converted before it is served.)"""
    addresses: dict[str, str] = {}
    procs: list[subprocess.Popen[str]] = []
    try:
        for line in commands(quickstarts()["services"]):
            args = shlex.split(localize(line.removesuffix("&").strip(), addresses))
            assert args[:2] == ["acecoder", "serve"], line
            ports = {flag: args[args.index(flag) + 1] for flag in ("--port", "--http-port")
                     if flag in args}
            for flag in ports:
                args[args.index(flag) + 1] = "0"
            pattern = r"listening on (\S+)" + (r" .*http on :(\d+)" if "--http-port" in ports
                                               else "")
            proc, m = spawn_server([sys.executable, "-m", "acecoder.cli", *args[1:]], pattern,
                                   line)
            procs.append(proc)
            addresses[f"localhost:{ports['--port']}"] = m.group(1)
            if "--http-port" in ports:
                addresses[f"localhost:{ports['--http-port']}"] = f"127.0.0.1:{m.group(2)}"
            if args[2] == "rm":  # serving once its model is in
                assert proc.stdout is not None and "ready" in proc.stdout.readline()
        # Longest first: localhost:5000 is how localhost:50051 begins.
        yield dict(sorted(addresses.items(), key=lambda kv: -len(kv[0])))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=60) == 0


def run_trainer_lines(block: str, module: str, addresses: dict[str, str],
                      tmp_path: Path) -> list[dict[str, Any]]:
    """Run each command of `block` that starts `python -m MODULE` (after its variables) with
    bash, MODULE swapped for the probe: what each would have started the trainer with."""
    probe, out = tmp_path / "probe.py", tmp_path / "calls.jsonl"
    probe.write_text(PROBE)
    lines = [line for line in commands(block) if f"python -m {module}" in line]
    assert lines, f"no `python -m {module}` in the quickstart"
    env = shell_env() | {"QUICKSTART_PROBE": str(out)}
    for line in lines:
        command = localize(line, addresses).replace(f"python -m {module}",
                                                    f"python {shlex.quote(str(probe))}")
        done = subprocess.run(["bash", "-c", command], env=env, cwd=tmp_path, text=True,
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
    calls = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(calls) == len(lines)
    return calls


def flags(argv: list[str]) -> dict[str, str]:
    """--flag value pairs of a command line (the README's `...` left out)."""
    args = [a for a in argv if a != "..."]
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    return dict(zip(args[::2], args[1::2], strict=True))


def test_the_openrlhf_quickstart(services: dict[str, str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Both lines, through OpenRLHF's own reward client: the reward file it imports by the
    path the command substitution prints (the installed module's), and the gateway's URL."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    import acecoder.clients.openrlhf as adapter

    calls = run_trainer_lines(quickstarts()["openrlhf"], "openrlhf.cli.train_ppo_ray",
                              services, tmp_path)
    assert len(calls) == 2
    prompt = "<|im_start|>user\nWrite add(a, b).<|im_end|>\n<|im_start|>assistant\n"
    queries = [prompt + r + "<|im_end|>" for r in (GOOD, WRONG)]
    for kind, call in zip(("file", "http"), calls, strict=True):
        args = flags(call["argv"])
        row = {"prompt": prompt, args["--data.label_key"]: json.dumps(TESTS)}
        labels = [row[args["--data.label_key"]]] * 2
        for name in settings(os.environ):
            monkeypatch.delenv(name)
        for name, value in settings(call["env"]).items():
            monkeypatch.setenv(name, value)
        urls = args["--reward.remote_url"].split(",")  # as train_ppo_ray splits it
        client = SingleTurnAgentExecutor(remote_rm_url=urls)
        if kind == "file":
            assert Path(urls[0]).samefile(adapter.__file__)  # the installed file itself
            assert settings(call["env"]) == {"ACECODER_EXECUTOR": services["localhost:50051"],
                                             "ACECODER_BINARY": "1"}
            infos = asyncio.run(client._fetch_rewards_via_func(queries, [prompt] * 2, labels))
            rewards = [float(i["rewards"][0]) for i in infos]
        else:
            assert urls[0].startswith("http://") and urls[0].endswith("/get_reward")
            [out] = asyncio.run(client._fetch_rewards_via_http(queries, [prompt] * 2, labels))
            rewards = [float(r) for r in out["rewards"]]
        assert rewards == [1.0, 0.0], kind  # binary: every test or nothing


def test_the_verl_quickstart(services: dict[str, str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The overrides, as bash hands them to verl: each names a key of verl's own trainer
    config (a `+` one a key it adds, as Hydra wants), the path is the installed module's
    file, and verl's own loader makes a reward function of them that scores."""
    from omegaconf import OmegaConf
    from verl.trainer import config as verl_config
    from verl.trainer.ppo.reward import get_custom_reward_fn

    import acecoder.clients.verl as adapter

    for name in settings(os.environ):
        monkeypatch.delenv(name)
    [call] = run_trainer_lines(quickstarts()["verl"], "verl.trainer.main_ppo", services,
                               tmp_path)
    overrides = [a for a in call["argv"] if a != "..."]
    base = OmegaConf.load(Path(verl_config.__file__).parent / "_generated_ppo_trainer.yaml")
    absent = object()
    for override in overrides:
        key = override.split("=", 1)[0]
        known = OmegaConf.select(base, key.lstrip("+"), default=absent) is not absent
        assert known != key.startswith("+"), f"{override}: Hydra would refuse it"
    config = OmegaConf.merge(base, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    assert Path(config.reward.custom_reward_function.path).samefile(adapter.__file__)
    fn = get_custom_reward_fn(config)
    got = [fn(data_source="acecode", solution_str=s, ground_truth=TESTS,
              extra_info={"question": "Write add(a, b)."}) for s in (GOOD, WRONG)]
    assert [g["score"] for g in got] == [1.0, 0.0]
    assert [g["pass_rate"] for g in got] == [1.0, 0.0] and all(g["ok"] for g in got)


@pytest.mark.slow
def test_the_trl_quickstart(services: dict[str, str], tiny_policy: Path,
                            tmp_path: Path) -> None:
    """The script as printed, its model a tiny policy: TRL's GRPOTrainer trains two steps
    and logs a reward for each (not NaN: the executor scored the completions)."""
    script = localize(quickstarts()["trl"], services)
    models = re.findall(r'model="([^"]+)"', script)
    assert len(models) == 1, models
    script = script.replace(f'model="{models[0]}"', f"model={str(tiny_policy)!r}")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=shell_env(),
                          text=True, capture_output=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    means = re.findall(r"'rewards/acecoder_reward/mean': '([^']+)'", output)
    assert len(means) == 2, output[-4000:]
    assert all(0.0 <= float(m) <= 1.0 for m in means), means  # NaN fails this
    assert (tmp_path / "grpo-acecoder").is_dir()
