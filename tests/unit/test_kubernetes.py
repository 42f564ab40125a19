"""deploy/kubernetes renders with kustomize, and every manifest it makes passes the schema of
its kind: Kubernetes' own for its kinds, KEDA's CRDs for ScaledObject and
TriggerAuthentication. The checks are shown to refuse a broken manifest, so a pass means
something."""

from __future__ import annotations

import pytest

from tests.unit.manifests import by_kind, render, validation_errors

# base: the parts alone; quickstart: one of each with the placeholder Secret; production:
# GPU nodes, KEDA, the DICOM listener, the Ingress.
RENDERINGS = ("base", "overlays/quickstart", "overlays/production")


@pytest.mark.parametrize("path", RENDERINGS)
def test_every_rendered_manifest_passes_its_schema(path: str) -> None:
    manifests = render(path)
    assert [error for m in manifests for error in validation_errors(m)] == []


def test_the_renderings_hold_what_they_should() -> None:
    kinds = {path: sorted({m["kind"] for m in render(path)}) for path in RENDERINGS}
    core = ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service",
            "ServiceAccount"]
    assert kinds["base"] == core
    assert kinds["overlays/quickstart"] == sorted([*core, "Secret"])
    assert kinds["overlays/production"] == sorted(
        [*core, "Ingress", "ScaledObject", "TriggerAuthentication"])
    for path in RENDERINGS:
        assert sorted(by_kind(render(path), "Deployment")) == [
            "bonemets-api", "bonemets-triton", "bonemets-worker"]


def test_a_misspelt_field_of_a_kubernetes_kind_is_refused() -> None:
    api = by_kind(render("base"), "Deployment")["bonemets-api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    errors = validation_errors(api)
    assert errors and all("livenesProbe" in error for error in errors)


def test_a_wrong_type_in_a_kubernetes_kind_is_refused() -> None:
    pdb = by_kind(render("base"), "PodDisruptionBudget")["bonemets-api"]
    pdb["spec"]["selector"] = "bonemets-api"
    assert any("spec.selector" in error for error in validation_errors(pdb))


def test_a_misspelt_or_missing_keda_field_is_refused() -> None:
    worker = by_kind(render("overlays/production"), "ScaledObject")["bonemets-worker"]
    assert validation_errors(worker) == []
    worker["spec"]["minReplicas"] = worker["spec"].pop("minReplicaCount")
    assert any("minReplicas" in error for error in validation_errors(worker))
    del worker["spec"]["scaleTargetRef"]
    assert any("scaleTargetRef" in error for error in validation_errors(worker))


def test_a_kind_without_any_schema_is_refused() -> None:
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
               "metadata": {"name": "triton"}, "spec": {}}
    assert validation_errors(monitor) != []
