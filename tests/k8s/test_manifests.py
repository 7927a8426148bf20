"""The Kubernetes manifests: every overlay renders with `kubectl kustomize`, validates against
the Kubernetes API schemas offline, and keeps the policies a platform engineer expects
(resources, probes, no privilege escalation, GPUs where they belong, the executor walled in).
The images' Dockerfiles are checked for pinning, stages and users."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod-gpu")
KUBERNETES = "1.32"
SERVERS = {"acecoder-executor": ("executor", 50061, "acecoder.v1.Executor"),
           "acecoder-rm": ("rm", 50062, "acecoder.v1.RewardModel"),
           "acecoder-synth": ("synth", 50063, "acecoder.v1.Synthesis")}
GPU = "nvidia.com/gpu"


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed to render k8s/: install it"
    done = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {**by_kind(docs, "Deployment"), **by_kind(docs, "Job")}


def pod(w: dict[str, Any]) -> dict[str, Any]:
    return w["spec"]["template"]["spec"]


def config(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The data of the (hash-suffixed) ConfigMap generated as `name`."""
    found = [d for d in docs if d["kind"] == "ConfigMap"
             and re.fullmatch(re.escape(name) + r"(-[a-z0-9]{10})?", d["metadata"]["name"])]
    assert len(found) == 1, name
    return found[0]["data"]


def test_every_object_validates_against_the_api_schemas(rendered) -> None:  # type: ignore[no-untyped-def]
    import kubernetes_validate

    overlay, docs = rendered
    checked = 0
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            # a CRD the API schemas do not know: check what the operator needs
            assert d["kind"] == "ServiceMonitor" and d["spec"]["endpoints"][0]["port"] == "metrics"
            continue
        kubernetes_validate.validate(d, KUBERNETES, strict=True)
        checked += 1
    assert checked >= 25, (overlay, checked)


def test_containers_have_resources_probes_and_no_privilege_escalation(rendered) -> None:  # type: ignore[no-untyped-def]
    overlay, docs = rendered
    for name, w in workloads(docs).items():
        spec = pod(w)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"{overlay}/{name}/{c['name']}"
            for side in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][side]), where
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and not sc.get("privileged"), where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc["readOnlyRootFilesystem"] is True, where
        if name in SERVERS:
            _, health_port, service = SERVERS[name]
            c = spec["containers"][0]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe]["grpc"]["port"] == health_port, (where, probe)
            assert c["readinessProbe"]["grpc"]["service"] == service
            assert f"--health-port={health_port}" in c["args"]
            grace = float(config(docs, name)["GRACE"])
            assert spec["terminationGracePeriodSeconds"] > grace + 10, name
            assert "--grace=$(GRACE)" in c["args"]


def test_non_root_except_the_executor(rendered) -> None:  # type: ignore[no-untyped-def]
    _, docs = rendered
    for name, w in workloads(docs).items():
        spec = pod(w)
        if name == "acecoder-executor":
            sc = spec["containers"][0]["securityContext"]
            assert sc["runAsUser"] == 0 and "SYS_ADMIN" in sc["capabilities"]["add"]
            mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
            assert "/tmp" in mounts
        else:
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert not spec["containers"][0]["securityContext"]["capabilities"].get("add"), name


def test_gpus_where_they_belong(rendered) -> None:  # type: ignore[no-untyped-def]
    overlay, docs = rendered
    for name, w in workloads(docs).items():
        spec = pod(w)
        limits = spec["containers"][0]["resources"]["limits"]
        wants_gpu = overlay == "prod-gpu" and name != "acecoder-executor"
        if wants_gpu:
            assert int(limits[GPU]) >= 1 and limits[GPU] == \
                spec["containers"][0]["resources"]["requests"][GPU], name
            assert spec["nodeSelector"] and any(t["key"] == GPU for t in spec["tolerations"])
        else:
            assert GPU not in limits and "tolerations" not in spec, (overlay, name)
    if overlay == "prod-gpu":
        assert config(docs, "acecoder-rm")["BACKEND"] == "vllm"
        assert pod(workloads(docs)["acecoder-executor"])["nodeSelector"] == \
            {"acecoder.io/pool": "cpu"}
        job = by_kind(docs, "Job")["acecoder-trainer"]["spec"]
        assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] == 2
    else:
        assert config(docs, "acecoder-rm")["MODEL"].startswith("embedded:")
        deployments = by_kind(docs, "Deployment")
        assert all(d["spec"]["replicas"] == 1 for d in deployments.values())


def test_the_executor_is_walled_in(rendered) -> None:  # type: ignore[no-untyped-def]
    _, docs = rendered
    policy = by_kind(docs, "NetworkPolicy")["acecoder-executor"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "acecoder-executor"}
    assert "Egress" in policy["policyTypes"] and policy["egress"] == []
    grpc_rule = next(r for r in policy["ingress"] if {"port": 50051, "protocol": "TCP"}
                     in r["ports"])
    (peer,) = grpc_rule["from"]
    (expr,) = peer["podSelector"]["matchExpressions"]
    assert set(expr["values"]) == {"rm", "synth", "trainer"} and "namespaceSelector" not in peer
    for rule in policy["ingress"]:  # no other rule opens the gRPC port
        if rule is not grpc_rule:
            assert all(p["port"] != 50051 for p in rule["ports"])
    c = pod(workloads(docs)["acecoder-executor"])["containers"][0]
    assert "--auth-tokens=/etc/acecoder/auth/tokens" in c["args"]
    assert "--trust-network" not in c["args"]


def test_scaling_disruption_and_the_trainer(rendered) -> None:  # type: ignore[no-untyped-def]
    overlay, docs = rendered
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(by_kind(docs, "Deployment")) <= set(pdbs)
    if overlay == "prod-gpu":
        assert {"acecoder-executor", "acecoder-rm"} <= set(by_kind(docs, "HorizontalPodAutoscaler"))
    trainer = by_kind(docs, "Job")["acecoder-trainer"]
    spec = pod(trainer)
    headless = by_kind(docs, "Service")["acecoder-trainer"]["spec"]
    assert headless["clusterIP"] == "None" and spec["subdomain"] == "acecoder-trainer"
    args = spec["containers"][0]["args"]
    assert "--master-addr=acecoder-trainer-0.acecoder-trainer" in args
    assert "--output=/checkpoints/run" in args  # resumes from the volume's last checkpoint
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
              if "persistentVolumeClaim" in v}
    assert "acecoder-checkpoints" in claims
    assert "acecoder-checkpoints" in by_kind(docs, "PersistentVolumeClaim")


def test_secrets_and_tls(rendered) -> None:  # type: ignore[no-untyped-def]
    from acecoder.security import parse_tokens

    overlay, docs = rendered
    secrets = by_kind(docs, "Secret")
    if overlay == "prod-gpu":
        assert not secrets  # production secrets never live in the repository
        for name, w in workloads(docs).items():
            c = pod(w)["containers"][0]
            env = {e["name"] for e in c.get("env", [])}
            if name in SERVERS:
                assert "--tls-client-ca=/etc/acecoder/tls/ca.crt" in c["args"], name
            if name != "acecoder-executor":  # clients of the executor present the certificate
                assert {"ACECODER_TLS_CA", "ACECODER_TLS_CERT", "ACECODER_TLS_KEY"} <= env, name
    else:
        import base64

        data = secrets["acecoder-auth"]["data"]
        tokens = parse_tokens(base64.b64decode(data["tokens"]).decode())
        for key in ("token-rm", "token-synth", "token-trainer"):
            mine = base64.b64decode(data[key])
            assert any(t.secret == mine for t in tokens), key


def test_in_cluster_callers_reach_every_replica(rendered) -> None:  # type: ignore[no-untyped-def]
    """gRPC keeps one connection per channel, so through a ClusterIP Service every call of a
    client lands on one pod. Each gRPC Service has a headless twin (one DNS record per ready
    pod) and the in-cluster callers name it with dns:///, which the clients spread calls over
    (round_robin); the ClusterIP Services stay for callers outside the cluster."""
    overlay, docs = rendered
    services = by_kind(docs, "Service")
    for name in SERVERS:
        plain, headless = services[name]["spec"], services[f"{name}-headless"]["spec"]
        assert plain.get("clusterIP") != "None" and headless["clusterIP"] == "None", name
        assert headless["selector"] == plain["selector"], name
        grpc_port = next(p for p in plain["ports"] if p["name"] == "grpc")
        assert headless["ports"] == [grpc_port], name
        assert not headless.get("publishNotReadyAddresses"), name  # only ready pods get calls
    targets = []
    for name, w in workloads(docs).items():
        for arg in pod(w)["containers"][0]["args"]:
            flag, _, value = arg.partition("=")
            if flag in ("--executor", "--rm", "--synth"):
                targets.append((name, flag, value))
    callers = {(name, flag) for name, flag, _ in targets}
    assert {("acecoder-rm", "--executor"), ("acecoder-synth", "--executor"),
            ("acecoder-trainer", "--executor"), ("acecoder-trainer", "--rm")} <= callers
    for name, flag, value in targets:
        host, _, port = value.removeprefix("dns:///").rpartition(":")
        assert value.startswith("dns:///") and host.endswith("-headless"), (overlay, name, value)
        service = services[host]["spec"]
        assert int(port) in {p["port"] for p in service["ports"]}, (overlay, name, value)


def test_dockerfiles_are_pinned_multi_stage_and_non_root() -> None:
    images = sorted((K8S / "images").glob("*.Dockerfile"))
    assert [p.stem for p in images] == ["executor", "server", "trainer"]
    for path in images:
        text = path.read_text()
        froms = re.findall(r"^FROM (\S+)", text, re.M)
        assert len(froms) >= 2, path.name  # a build stage and a lean final one
        for image in froms:
            assert ":" in image and not image.endswith(":latest"), (path.name, image)
        for spec in re.findall(r"pip install [^\n]*?((?:torch|vllm|deepspeed)\S*)", text):
            assert "==" in spec, (path.name, spec)
        final = text.split(f"FROM {froms[-1]}", 1)[1]
        if path.stem == "executor":
            assert "USER" not in final  # root in its pod: it drops programs to their own uids
        else:
            assert re.search(r"^USER 10001", final, re.M), path.name


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of a container argument."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def test_every_command_line_is_one_acecoder_accepts(rendered) -> None:  # type: ignore[no-untyped-def]
    """The manifests name CLI flags; a renamed flag must fail here, not in a cluster."""
    from acecoder.cli import build_parser

    overlay, docs = rendered
    parser = build_parser()
    for name, w in workloads(docs).items():
        c = pod(w)["containers"][0]
        env = dict(config(docs, name))
        env.update({e["name"]: e.get("value", "0") for e in c.get("env", [])})
        args = [expand(a, env) for a in c["args"]]
        if c.get("command") == ["torchrun"]:
            assert args[args.index("-m") + 1] == "acecoder.cli", name
            args = args[args.index("-m") + 2:]
        parsed = parser.parse_args(args)
        assert parsed.command in ("serve", "train"), (overlay, name)
        if parsed.command == "serve":
            assert parsed.host == "0.0.0.0" and parsed.health_port is not None
            assert parsed.auth_tokens == "/etc/acecoder/auth/tokens"
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/etc/acecoder/auth" in mounts
            if overlay == "prod-gpu":
                assert parsed.tls_client_ca == "/etc/acecoder/tls/ca.crt"
        else:
            assert parsed.executor == "dns:///acecoder-executor-headless:50051"
            assert parsed.rm == "dns:///acecoder-rm-headless:50052"
            from acecoder.trainer.recipes.base import find_preset

            assert find_preset(parsed.preset).is_file()


def test_the_executor_image_has_every_languages_toolchain() -> None:
    """`Info` lists the languages whose toolchain the executor finds: the image installs the
    package languages.py names for each (what FAILED_PRECONDITION tells a user to install)."""
    from acecoder.executor.languages import LANGUAGES

    text = (K8S / "images" / "executor.Dockerfile").read_text()
    final = text.rsplit("\nFROM ", 1)[1]  # the image that runs, not the build stage
    install = final.split("apt-get install", 1)[1].split("&&", 1)[0]
    installed = {word.split("=")[0] for word in install.split()}
    for lang in LANGUAGES.values():
        if lang.name != "python":  # the image's own interpreter
            assert lang.package in installed, lang.name


def test_the_executor_image_builds_the_zygote_loop_in_c() -> None:
    """The build stage has a compiler, so the installed package holds the C loop (without
    one, pip builds the package without it and the zygotes run the slower Python loop)."""
    text = (K8S / "images" / "executor.Dockerfile").read_text()
    build = text.rsplit("\nFROM ", 1)[0]
    install = build.split("apt-get install", 1)[1].split("&&", 1)[0]
    assert {"gcc", "libc6-dev"} <= {word.split("=")[0] for word in install.split()}
    assert build.index("apt-get install") < build.index("pip install")


def test_the_executor_image_precompiles_the_cpp_header() -> None:
    """The image is read-only at run time: its <bits/stdc++.h> is precompiled at build, by the
    final stage's own g++ (the one every compile runs), after the package is in place."""
    final = (K8S / "images" / "executor.Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    step = final.index("RUN python -m acecoder.executor.pch")
    assert final.index("g++=") < step and final.index("COPY --from=build /opt/acecoder") < step
