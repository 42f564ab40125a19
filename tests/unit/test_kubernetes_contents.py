"""What deploy/kubernetes promises an operator, checked on the rendered manifests: the roles,
the probes, resources and security contexts of every container, a disruption budget for every
Deployment, Triton behind a headless Service, no secret outside a Secret and no real value in
one, settings the gateway knows, and autoscaling on the right signals."""

from __future__ import annotations

import re
from typing import Any

import pytest

from api.config import Settings
from api.study.jobs import JobState
from tests.unit.manifests import Manifest, by_kind, containers, pod_spec, render

RENDERINGS = ("base", "overlays/quickstart", "overlays/production")
GATEWAY = ("bonemets-api", "bonemets-worker")
PLACEHOLDER = "CHANGE-ME"
# Settings decided for issue 21 whose code other changes bring; every other BONEMETS_* name
# in a ConfigMap must be a field of api.config.Settings.
DECIDED_SETTINGS = {"database_url", "storage_url"}
# Names a secret goes by: never in a ConfigMap, only in the Secret.
SECRET_NAMES = re.compile(r"DATABASE_URL|SECRET|PASSWORD|TOKEN|LINK_KEYS|ACCESS_KEY")


def _settings(manifests: list[Manifest]) -> dict[str, str]:
    (config_map,) = by_kind(manifests, "ConfigMap").values()
    data: dict[str, str] = config_map["data"]
    return data


def _http_get(probe: dict[str, Any]) -> tuple[str, Any]:
    return probe["httpGet"]["path"], probe["httpGet"]["port"]


@pytest.mark.parametrize("path", RENDERINGS)
def test_api_and_worker_run_their_roles_with_the_gateway_probes(path: str) -> None:
    deployments = by_kind(render(path), "Deployment")
    for name, role in zip(GATEWAY, ("api", "worker"), strict=True):
        gateway = pod_spec(deployments[name])["containers"][0]
        assert gateway["args"] == ["bonemets", "serve", "--role", role]
        assert _http_get(gateway["livenessProbe"]) == ("/healthz", "http")
        assert _http_get(gateway["readinessProbe"]) == ("/readyz", "http")
        assert _http_get(gateway["startupProbe"]) == ("/healthz", "http")
        assert {"name": "http", "containerPort": 8000} in gateway["ports"]
    triton = pod_spec(deployments["bonemets-triton"])["containers"][0]
    assert _http_get(triton["livenessProbe"]) == ("/v2/health/live", "http")
    assert _http_get(triton["readinessProbe"]) == ("/v2/health/ready", "http")


@pytest.mark.parametrize("path", RENDERINGS)
def test_every_container_has_requests_and_limits(path: str) -> None:
    for where, container in containers(render(path)):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), where
        assert {"cpu", "memory"} <= set(resources["limits"]), where
    triton = by_kind(render(path), "Deployment")["bonemets-triton"]
    resources = pod_spec(triton)["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1


@pytest.mark.parametrize("path", RENDERINGS)
def test_every_pod_runs_as_a_user_on_a_read_only_root(path: str) -> None:
    for name, deployment in by_kind(render(path), "Deployment").items():
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
    for where, container in containers(render(path)):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where


@pytest.mark.parametrize("path", RENDERINGS)
def test_every_deployment_has_one_disruption_budget(path: str) -> None:
    manifests = render(path)
    budgets = by_kind(manifests, "PodDisruptionBudget").values()
    for name, deployment in by_kind(manifests, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets
                    if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, name


@pytest.mark.parametrize("path", RENDERINGS)
def test_workers_reach_every_triton_pod_through_a_headless_service(path: str) -> None:
    manifests = render(path)
    host, port = _settings(manifests)["BONEMETS_TRITON_URL"].split(":")
    service = by_kind(manifests, "Service")[host]
    assert service["spec"]["clusterIP"] == "None"
    triton = by_kind(manifests, "Deployment")["bonemets-triton"]
    assert service["spec"]["selector"].items() <= (
        triton["spec"]["template"]["metadata"]["labels"].items())
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["port"] == int(port) == 8001
    args = pod_spec(triton)["containers"][0]["args"]
    assert "--load-model=$(BONEMETS_MODEL_NAME)" in args
    assert "--metrics-port=8002" in args


@pytest.mark.parametrize("path", RENDERINGS)
def test_settings_are_the_gateways_and_hold_no_secret(path: str) -> None:
    settings = _settings(render(path))
    known = set(Settings.model_fields) | DECIDED_SETTINGS
    unknown = [key for key in settings if key.startswith("BONEMETS_")
               and key.removeprefix("BONEMETS_").lower() not in known]
    assert unknown == []
    assert [key for key in settings if SECRET_NAMES.search(key)] == []


def test_the_only_committed_secret_holds_placeholders_and_every_referenced_key() -> None:
    manifests = render("overlays/quickstart")
    (secret,) = by_kind(manifests, "Secret").values()
    assert secret["metadata"]["name"] == "bonemets"
    assert "data" not in secret
    assert {k: v for k, v in secret["stringData"].items() if PLACEHOLDER not in v} == {}
    # Every key a pod or KEDA reads from it is there, so the template is complete.
    referenced = {ref["key"] for _, c in containers(manifests)
                  for ref in (e.get("valueFrom", {}).get("secretKeyRef") for e in c.get("env", []))
                  if ref}
    auth = by_kind(render("overlays/production"), "TriggerAuthentication")
    referenced |= {ref["key"] for a in auth.values() for ref in a["spec"]["secretTargetRef"]}
    assert referenced == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "BONEMETS_DATABASE_URL"}
    assert referenced <= set(secret["stringData"])
    assert "BONEMETS_LINK_KEYS" in secret["stringData"]
    assert by_kind(render("overlays/production"), "Secret") == {}


@pytest.mark.parametrize("path", RENDERINGS)
def test_configuration_references_resolve(path: str) -> None:
    manifests = render(path)
    config_maps = set(by_kind(manifests, "ConfigMap"))
    for where, container in containers(manifests):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps, where
            else:
                assert source["secretRef"]["name"] == "bonemets", where
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                assert ref["name"] in config_maps, where
                assert ref["key"] in _settings(manifests), where


def test_production_autoscales_workers_on_the_queue_and_triton_on_its_queue_time() -> None:
    manifests = render("overlays/production")
    scaled = by_kind(manifests, "ScaledObject")
    deployments = by_kind(manifests, "Deployment")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == {
        "bonemets-worker", "bonemets-triton"}
    for target in ("bonemets-worker", "bonemets-triton"):
        # KEDA owns the count: a replica count here would be reset at every apply.
        assert "replicas" not in deployments[target]["spec"]
    assert deployments["bonemets-api"]["spec"]["replicas"] == 3
    (queue,) = scaled["bonemets-worker"]["spec"]["triggers"]
    assert queue["type"] == "postgresql"
    assert re.search(r"FROM jobs WHERE state IN \('queued', 'running'\)",
                     queue["metadata"]["query"])
    # The words the job store writes in that column (api/study/jobs.py).
    assert {JobState.QUEUED.value, JobState.RUNNING.value} == {"queued", "running"}
    assert queue["authenticationRef"]["name"] in by_kind(manifests, "TriggerAuthentication")
    (queue_time,) = scaled["bonemets-triton"]["spec"]["triggers"]
    assert queue_time["type"] == "prometheus"
    assert queue_time["metricType"] == "Value"
    query = queue_time["metadata"]["query"]
    model = _settings(manifests)["BONEMETS_MODEL_NAME"]
    assert f'nv_inference_queue_duration_us{{model="{model}"}}' in query
    assert f'nv_inference_request_success{{model="{model}"}}' in query


def test_production_pins_every_image_and_serves_https_and_dicom() -> None:
    manifests = render("overlays/production")
    for where, container in containers(manifests):
        image = container["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), where
    (ingress,) = by_kind(manifests, "Ingress").values()
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    settings = _settings(manifests)
    assert settings["BONEMETS_PUBLIC_URL"] == f"https://{tls['hosts'][0]}"
    dicom = by_kind(manifests, "Service")["bonemets-dicom"]
    assert dicom["spec"]["ports"] == [{"name": "dicom", "port": 11112, "targetPort": "dicom"}]
    assert dicom["spec"]["sessionAffinity"] == "ClientIP"
    api = pod_spec(by_kind(manifests, "Deployment")["bonemets-api"])["containers"][0]
    assert {"name": "dicom", "containerPort": 11112} in api["ports"]
    assert settings["BONEMETS_DICOM_PORT"] == "11112"
    assert "bonemets-dicom" not in by_kind(render("overlays/quickstart"), "Service")
