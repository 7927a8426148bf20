"""compose.yaml, for trying the three services with a container engine: valid against the
Compose specification's schema (no engine here), every command one acecoder accepts, health
checks that name the services' real gRPC health names, and the executor granted exactly what
its Kubernetes Deployment grants."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from acecoder.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
# The Compose specification's JSON schema (compose-spec/compose-spec, schema/compose-spec.json,
# Apache-2.0), kept beside this test: validation runs offline.
SCHEMA = Path(__file__).with_name("compose-spec.json")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose)
    assert set(compose["services"]) == {"executor", "rm", "synth"}


def test_a_broken_file_would_be_caught() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(
            {"services": {"x": {"ports": {"not": "a list"}}}})


def test_every_command_is_one_acecoder_accepts(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name, svc in compose["services"].items():
        args = parser.parse_args(svc["command"])
        assert (args.command, args.service) == ("serve", name), name
        assert args.host == "0.0.0.0" and args.health_port is not None
        assert (REPO / svc["build"]["dockerfile"]).is_file()
        published = {int(p.rsplit(":", 1)[1]) for p in svc["ports"]}
        assert args.port in published and all(p.startswith("127.0.0.1:") for p in svc["ports"])
        health = svc["healthcheck"]["test"]
        assert f"localhost:{args.health_port}" in health[3]
        proto = {"executor": "executor", "rm": "reward", "synth": "synthesis"}[name]
        service = health[-1].rsplit(".", 1)[1]
        assert f"service {service} {{" in (REPO / "proto/acecoder/v1" / f"{proto}.proto").read_text()
        if name != "executor":
            assert args.executor == "executor:50051"
            assert svc["depends_on"]["executor"]["condition"] == "service_healthy"


def test_the_executor_gets_what_its_deployment_gets(compose: dict[str, Any]) -> None:
    deployment = yaml.safe_load((REPO / "k8s/base/executor.yaml").read_text().split("\n---")[0])
    if deployment.get("kind") != "Deployment":
        docs = list(yaml.safe_load_all((REPO / "k8s/base/executor.yaml").read_text()))
        deployment = next(d for d in docs if d and d.get("kind") == "Deployment")
    caps = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    svc = compose["services"]["executor"]
    assert svc["cap_drop"] == ["ALL"]
    assert sorted(svc["cap_add"]) == sorted(caps["capabilities"]["add"])
    assert svc["read_only"] is True and "no-new-privileges=true" in svc["security_opt"]
