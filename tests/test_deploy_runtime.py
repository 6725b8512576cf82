"""What `kubectl apply -k` gives must run (SPEC §8), beyond what schemas can see:
the files as the kubelet lays them out are readable by trackgate's user, the
collector outlives trackgate's drain, the network policy fences the admin port,
the monitoring resources carry the labels Prometheus selects on.

The pod's volumes are laid out from the rendered manifests (`tests/kubelet.py`)
with the keys Secret made by the commands deploy/README.md documents; as root
the tree is also written to disk with its owners and `trackgate check` runs as
the container's uid and groups.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from sidecar.app import DRAIN_GRACE_SECONDS
from sidecar.config import load_rules
from tests.docs import blocks, commands
from tests.kubelet import Identity, Peer, PodFiles, admits, identity, secret_files
from tests.test_deploy import (
    DEPLOY,
    by_kind,
    pod_spec,
    render,
    rules_document,
    tool,
    trackgate_container,
)

RUNBOOK = DEPLOY / "README.md"
RUNS_AS_ROOT = os.geteuid() == 0
NAMESPACE = "tracking"


@pytest.fixture(scope="module")
def keys_secret() -> Iterator[dict[str, Any]]:
    """The Secret the runbook's "First apply" commands create, made by running them
    (`kubectl create` as a client-side dry run)."""
    [block] = [b for b in blocks(RUNBOOK, "sh") if "create secret generic trackgate-keys" in b.text]
    with tempfile.TemporaryDirectory() as directory:
        for words in commands(block, "trackgate"):
            if words[1] == "keygen":
                run = [sys.executable, "-m", "sidecar", *words[1:]]
                subprocess.run(run, cwd=directory, check=True, capture_output=True, timeout=60)
        [create] = [w for w in commands(block, "kubectl") if w[1:3] == ["create", "secret"]]
        out = subprocess.run(
            [tool("kubectl"), *create[1:], "--dry-run=client", "-o", "yaml"],
            cwd=directory, check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        yield yaml.safe_load(out.stdout)


def pod_files(objects: list[dict[str, Any]], secret: dict[str, Any]) -> PodFiles:
    """trackgate's mounted volumes, laid out as the kubelet does."""
    spec = pod_spec(objects)
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_maps = {c["metadata"]["name"]: c for c in by_kind(objects, "ConfigMap")}
    fs_group = spec.get("securityContext", {}).get("fsGroup")
    files = PodFiles()
    for mount in trackgate_container(spec)["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" in volume:
            source = volume["secret"]
            assert source["secretName"] == secret["metadata"]["name"]
            data = secret_files(secret)
        else:
            source = volume["configMap"]
            data = {k: v.encode() for k, v in config_maps[source["name"]]["data"].items()}
        files.mount(mount["mountPath"], data, source.get("defaultMode", 0o644), fs_group)
    return files


def referenced_files(files: PodFiles, rules_path: str, root: Path) -> list[str]:
    """The rules file and every file it references, as paths in the container."""
    files.materialize(root)
    rules = load_rules(root / rules_path.lstrip("/"), env={})
    inside = (PurePosixPath("/") / Path(s).relative_to(root) for s in rules.sources)
    return [os.path.normpath(p) for p in inside]  # `rules/../keys`: `rules` is no link


def read_as(who: Identity, root: Path, paths: list[str]) -> subprocess.CompletedProcess[str]:
    """`cat` of the files laid out under `root`, run as the container's user and
    groups (needs root): the kernel's own verdict on the owners and modes. (cat, not
    trackgate: this machine's Python lives where uid 10001 cannot reach it.)"""
    return subprocess.run(
        [shutil.which("cat") or "cat", *(str(root / p.lstrip("/")) for p in paths)],
        user=who.uid, group=who.gid, extra_groups=sorted(who.groups),
        env={"PATH": os.environ["PATH"]}, cwd=root,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def pod_root() -> Iterator[Path]:
    """A directory standing in for the container's `/`, searchable by any user
    (pytest's tmp_path is private to its owner)."""
    with tempfile.TemporaryDirectory(prefix="trackgate-pod-") as directory:
        os.chmod(directory, 0o755)
        yield Path(directory)


# -- files -----------------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", ["base", "overlays/legacy", "overlays/monitoring"])
def test_the_sidecar_user_can_read_every_file_the_rules_reference(
    kustomization: str, keys_secret: dict[str, Any], pod_root: Path
) -> None:
    objects = render(kustomization)
    spec = pod_spec(objects)
    container = trackgate_container(spec)
    who = identity(spec, container)
    assert who.uid == 10001 and who.uid != 0
    files = pod_files(objects, keys_secret)
    env = {e["name"]: e["value"] for e in container["env"]}
    paths = referenced_files(files, env["TRACKGATE_CONFIG"], pod_root)
    assert any("/etc/trackgate/keys/" in p for p in paths), paths  # a key file, from the Secret
    unreadable = [p for p in paths if not files.readable(p, who)]
    assert unreadable == []
    if RUNS_AS_ROOT:
        read = read_as(who, pod_root, paths)
        assert read.returncode == 0, read.stderr


def test_without_fs_group_the_key_files_are_unreadable(
    keys_secret: dict[str, Any], pod_root: Path
) -> None:
    """The check above can fail: the manifest without `fsGroup` (what the issue
    reproduced) leaves the 0440 key files root:root."""
    objects = render("base")
    spec = pod_spec(objects)
    del spec["securityContext"]["fsGroup"]
    who = identity(spec, trackgate_container(spec))
    files = pod_files(objects, keys_secret)
    rules_path = "/etc/trackgate/rules/rules.yaml"
    paths = referenced_files(files, rules_path, pod_root)
    assert files.readable(rules_path, who)
    assert [p for p in paths if not files.readable(p, who)] == ["/etc/trackgate/keys/web-1"]
    if RUNS_AS_ROOT:
        assert read_as(who, pod_root, [rules_path]).returncode == 0
        read = read_as(who, pod_root, ["/etc/trackgate/keys/web-1"])
        assert read.returncode == 1
        assert "keys/web-1: Permission denied" in read.stderr


def test_no_kustomization_ships_the_keys_secret() -> None:
    for kustomization in ("base", "overlays/legacy", "overlays/monitoring"):
        objects = render(kustomization)
        assert by_kind(objects, "Secret") == []
        volumes = pod_spec(objects)["volumes"]
        assert [v["secret"]["secretName"] for v in volumes if "secret" in v] == ["trackgate-keys"]


# -- shutdown ------------------------------------------------------------------------------


def prestop_seconds(container: dict[str, Any]) -> int:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return int(command[1])


@pytest.mark.parametrize("kustomization", ["base", "overlays/legacy"])
def test_the_collector_outlives_trackgates_drain(kustomization: str) -> None:
    """trackgate may forward until its preStop, its shutdown delay and its in-flight
    drain (upstream timeout + DRAIN_GRACE_SECONDS) have passed; the collector must
    still be up then. Ordinary containers are stopped together; a native sidecar
    only after the collector has exited, so the grace period must cover both in a row."""
    objects = render(kustomization)
    spec = pod_spec(objects)
    sidecar = trackgate_container(spec)
    [collector] = [c for c in spec["containers"] if c["name"] != "trackgate"]
    server = rules_document(objects)["server"]
    drain = (
        prestop_seconds(sidecar)
        + server["shutdown_delay_seconds"]
        + server["upstream"]["timeout_seconds"]
        + DRAIN_GRACE_SECONDS
    )
    assert prestop_seconds(sidecar) == server["shutdown_delay_seconds"]
    assert prestop_seconds(collector) > drain
    native = sidecar.get("restartPolicy") == "Always"
    assert native == (kustomization == "base")
    collector_up = prestop_seconds(collector)
    needed = collector_up + drain if native else max(collector_up, drain)
    assert spec["terminationGracePeriodSeconds"] > needed


def test_probes_tolerate_one_slow_answer() -> None:
    sidecar = trackgate_container(pod_spec(render("base")))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert sidecar[probe]["failureThreshold"] >= 3, probe
        assert sidecar[probe].get("timeoutSeconds", 1) >= 2, probe


# -- network ----------------------------------------------------------------------------------


def reachable(objects: list[dict[str, Any]], port_name: str, peer: Peer) -> bool:
    spec = pod_spec(objects)
    [deployment] = by_kind(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in trackgate_container(spec)["ports"]}
    policies = by_kind(objects, "NetworkPolicy")
    return admits(policies, labels, ports, ports[port_name], peer, NAMESPACE)


INGRESS = Peer("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
NEIGHBOUR = Peer(NAMESPACE, {"app": "something-else"})
PROMETHEUS = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
STRANGER = Peer("default", {"app": "curl"})


def test_the_network_policy_selects_the_pod_and_fences_the_admin_port() -> None:
    base, monitoring = render("base"), render("overlays/monitoring")
    for objects in (base, monitoring):
        [policy] = by_kind(objects, "NetworkPolicy")
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for peer in (INGRESS, NEIGHBOUR, STRANGER, PROMETHEUS):
            assert reachable(objects, "tracking", peer), peer
        for peer in (INGRESS, NEIGHBOUR, STRANGER):
            assert not reachable(objects, "admin", peer), peer
    assert not reachable(base, "admin", PROMETHEUS)
    assert reachable(monitoring, "admin", PROMETHEUS)
    # The evaluation is real: without the policy, everything is reachable.
    bare = [o for o in base if o["kind"] != "NetworkPolicy"]
    assert reachable(bare, "admin", STRANGER)
    [service] = by_kind(base, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["tracking"]


def test_monitoring_resources_carry_the_label_prometheus_selects_on() -> None:
    """kube-prometheus-stack selects ServiceMonitors and PrometheusRules by
    `release: <release name>`; the knob sets it on both."""
    objects = render("overlays/monitoring")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        [resource] = by_kind(objects, kind)
        assert resource["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
    knobs = (DEPLOY / "overlays/monitoring/kustomization.yaml").read_text()
    assert "release: kube-prometheus-stack" in knobs
    assert "kube-prometheus-stack" in RUNBOOK.read_text()
