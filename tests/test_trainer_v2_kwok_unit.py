"""How the kwok control plane serves Trainer v2's and JobSet's webhooks, without starting them:
upstream's webhook configurations re-pointed at 127.0.0.1, their configuration files, the
certificates. Reads the two modules from the Go module cache (skips without Go)."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from helpers.backend.kwok import pki, supervisor
from helpers.backend.kwok import trainer_v2 as kwok_trainer_v2
from helpers.errors import BackendUnavailable


@pytest.fixture(scope="module")
def modules():
    try:
        return kwok_trainer_v2.trainer_dir(), kwok_trainer_v2.jobset_dir()
    except BackendUnavailable as exc:
        pytest.skip(f"Trainer v2 / JobSet modules unavailable: {exc}")


def test_json_patch_adds_and_replaces_like_kustomize():
    doc = {"metadata": {"name": "a"}, "webhooks": [{"name": "x"}, {"name": "y"}]}
    out = kwok_trainer_v2.json_patch(doc, [
        {"op": "replace", "path": "/metadata/name", "value": "b"},
        {"op": "add", "path": "/webhooks/0/objectSelector", "value": {"k": "v"}},
        {"op": "replace", "path": "/webhooks/1", "value": {"name": "z"}}])
    assert out == {"metadata": {"name": "b"}, "webhooks": [{"name": "x", "objectSelector": {"k": "v"}},
                                                           {"name": "z"}]}
    assert doc["metadata"]["name"] == "a"  # the input is left alone
    with pytest.raises(ValueError, match="does not exist"):
        kwok_trainer_v2.json_patch(doc, [{"op": "replace", "path": "/metadata/uid", "value": 1}])
    with pytest.raises(ValueError, match="unsupported"):
        kwok_trainer_v2.json_patch(doc, [{"op": "remove", "path": "/metadata/name"}])


def test_webhook_configurations_are_upstreams_pointed_at_loopback(modules):
    hooks = kwok_trainer_v2.webhook_configurations(1111, 2222, b"trainer-ca", b"jobset-ca")
    by_name = {h["metadata"]["name"]: h for h in hooks}
    # Trainer's names come from its patches (main.go injects its CA into exactly these two)
    assert set(by_name) == {"defaulter.trainer.kubeflow.org", "validator.trainer.kubeflow.org",
                            "jobset-mutating-webhook-configuration",
                            "jobset-validating-webhook-configuration"}
    for hook in hooks:
        port, ca = (1111, b"trainer-ca") if "trainer" in hook["metadata"]["name"] else (2222, b"jobset-ca")
        for wh in hook["webhooks"]:
            assert wh["clientConfig"]["url"].startswith(f"https://127.0.0.1:{port}/")
            assert base64.b64decode(wh["clientConfig"]["caBundle"]) == ca
            assert wh["failurePolicy"] == "Fail"
    # JobSet's pod webhooks only see JobSet's pods (its kustomize patches)
    for kind in ("mutating", "validating"):
        pod_hooks = [w for w in by_name[f"jobset-{kind}-webhook-configuration"]["webhooks"]
                     if w["rules"][0]["resources"] == ["pods"]]
        assert len(pod_hooks) == 1
        selector = pod_hooks[0]["objectSelector"]["matchExpressions"][0]
        assert selector["key"] == "jobset.sigs.k8s.io/jobset-name"
    paths = {w["clientConfig"]["url"].split("/", 3)[3] for h in hooks for w in h["webhooks"]}
    assert "mutate-trainer-kubeflow-org-v1alpha1-trainjob" in paths


def test_configs_bind_loopback_and_turn_off_what_a_cluster_provides(modules, tmp_path):
    trainer = kwok_trainer_v2.trainer_config(1, 2)
    assert trainer["webhook"] == {"port": 1, "host": "127.0.0.1"}
    assert trainer["health"]["healthProbeBindAddress"] == "127.0.0.1:2"
    assert trainer["health"]["readinessEndpointName"] == "readyz"  # upstream's, kept
    assert trainer["metrics"]["bindAddress"] == "0"
    assert trainer["leaderElection"]["leaderElect"] is False
    assert trainer["certManagement"]["enable"] is False
    jobset = kwok_trainer_v2.jobset_config(3, 4, tmp_path)
    assert (jobset["webhook"]["host"], jobset["webhook"]["port"]) == ("127.0.0.1", 3)
    assert jobset["webhook"]["certDir"] == str(tmp_path)
    assert jobset["internalCertManagement"]["enable"] is False
    assert jobset["apiVersion"] == "config.jobset.x-k8s.io/v1alpha1"


def test_crds_are_jobsets_then_trainers_three(modules):
    names = [p.name for p in kwok_trainer_v2.crd_files()]
    assert names[0] == "jobset.x-k8s.io_jobsets.yaml"
    assert sorted(names[1:]) == ["trainer.kubeflow.org_clustertrainingruntimes.yaml",
                                 "trainer.kubeflow.org_trainingruntimes.yaml",
                                 "trainer.kubeflow.org_trainjobs.yaml"]


def test_webhook_certificate_is_for_loopback_and_signed_by_the_returned_ca(tmp_path):
    from cryptography import x509

    ca_pem = pki.write_webhook_certs(tmp_path, "trainer")
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0


def test_its_ports_move_with_the_port_base(monkeypatch):
    monkeypatch.setenv("KFLABS_CONTROLPLANE_PORT_BASE", "30000")
    p = supervisor.ports()
    assert [p[k] for k in ("jobset-webhook", "jobset-health", "trainer-webhook", "trainer-health")] \
        == [30086, 30087, 30088, 30089]
