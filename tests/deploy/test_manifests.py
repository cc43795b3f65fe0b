"""deploy/k8s: every Kubernetes manifest validates against the Kubernetes schemas (offline,
``kubernetes-validate``, strict: unknown fields are errors); the KEDA and kustomize files, which
have no schema there, are checked for what the others rely on."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# The oldest Kubernetes the manifests promise (policy/v1 PDB, seccompProfile) and the newest
# the validator knows.
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
NO_SCHEMA = {"keda.sh/v1alpha1", "kustomize.config.k8s.io/v1beta1"}


def documents() -> list[dict[str, Any]]:
    """Every YAML document of deploy/k8s."""
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    """Documents of one kind by name (a Kustomization has none: "")."""
    return {d.get("metadata", {}).get("name", ""): d for d in documents() if d["kind"] == kind}


@pytest.mark.parametrize("version", VERSIONS)
def test_kubernetes_manifests_validate(version: str) -> None:
    validated = 0
    for doc in documents():
        if doc["apiVersion"] in NO_SCHEMA:
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error
        validated += 1
    assert validated >= 6, validated  # 2 Deployments, Service, PDB, ConfigMap, Secret


def test_the_validator_rejects_broken_manifests() -> None:
    deployment = copy.deepcopy(by_kind("Deployment")["ragserve-api"])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)
    deployment = copy.deepcopy(by_kind("Deployment")["ragserve-api"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_references_between_manifests() -> None:
    deployments = by_kind("Deployment")
    api, worker = deployments["ragserve-api"], deployments["ragserve-worker"]
    (config,) = by_kind("ConfigMap")
    (secret,) = by_kind("Secret")
    for deployment in (api, worker):
        template = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            template["metadata"]["labels"].items()
        )
        (container,) = template["spec"]["containers"]
        refs = {k: v["name"] for ref in container["envFrom"] for k, v in ref.items()}
        assert refs == {"configMapRef": config, "secretRef": secret}
    # The Service and the PodDisruptionBudget select the API pods.
    api_labels = api["spec"]["template"]["metadata"]["labels"].items()
    assert by_kind("Service")["ragserve-api"]["spec"]["selector"].items() <= api_labels
    pdb = by_kind("PodDisruptionBudget")["ragserve-api"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= api_labels
    # Probes point at the API's real endpoints.
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Drain fits in the grace period.
    drain = float(by_kind("ConfigMap")[config]["data"]["RAGSERVE_DRAIN_S"])
    for deployment in (api, worker):
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain


def test_keda_objects() -> None:
    """No schema for KEDA's CRDs offline: check the fields KEDA needs and the references."""
    (scaled,) = by_kind("ScaledObject").values()
    (auth,) = by_kind("TriggerAuthentication").values()
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] in by_kind("Deployment")
    assert spec["scaleTargetRef"]["name"] == "ragserve-worker"
    assert isinstance(spec["minReplicaCount"], int) and isinstance(spec["maxReplicaCount"], int)
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    triggers = {t["type"]: t for t in spec["triggers"]}
    assert sorted(triggers) == ["postgresql", "prometheus"]
    assert triggers["postgresql"]["authenticationRef"]["name"] == auth["metadata"]["name"]
    # Scale on the expected wait (docs/DEPLOY.md, KEDA), as a Value: the HPA multiplies it by
    # the ready workers, which is what brings the wait to the threshold.
    wait = triggers["prometheus"]
    assert wait["metricType"] == "Value"
    assert "ragserve_queue_expected_wait_seconds" in wait["metadata"]["query"]
    for trigger in triggers.values():
        # KEDA reads metric values as strings (a number here is a decode error in KEDA).
        assert all(isinstance(v, str) for v in trigger["metadata"].values())
    (secret,) = by_kind("Secret").values()
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["parameter"] == "connection"
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]


def test_kustomization_lists_every_manifest_but_the_secret() -> None:
    (kustomization,) = by_kind("Kustomization").values()
    listed = set(kustomization["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files - {"secret.example.yaml"}
