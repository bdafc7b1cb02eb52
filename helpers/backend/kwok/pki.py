"""The control plane's PKI: a CA, the API server's serving certificate, the service-account key,
and the kubeconfig with a bearer token.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import yaml

# --------------------------------------------------------------------------- certificates


def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(k) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_and_serving_cert(ca_cn: str, cn: str, dns_names: tuple[str, ...]):
    """A CA (valid a year) and a serving certificate it signed for 127.0.0.1 + ``dns_names``.

    Returns:
        (ca certificate, serving certificate, serving key).
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=365)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_cn)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    srv_key = _key()
    sans = [x509.DNSName(n) for n in dns_names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                          critical=False)
           .sign(ca_key, hashes.SHA256()))
    return ca, srv, srv_key


def _write(folder: Path, files: dict[str, bytes]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o600)
        out[name] = folder / name
    return out


def write_pki(pki: Path) -> dict[str, Path]:
    """Create a CA, a serving certificate for 127.0.0.1 and a service-account key pair."""
    from cryptography.hazmat.primitives import serialization

    ca, srv, srv_key = _ca_and_serving_cert("kflabs-local-ca", "kube-apiserver", (
        "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"))
    sa_key = _key()
    return _write(pki, {
        "ca.crt": _pem(ca),
        "apiserver.crt": _pem(srv),
        "apiserver.key": _pem_key(srv_key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo),
    })


def write_webhook_certs(folder: Path, name: str) -> bytes:
    """A webhook server's ``tls.crt``/``tls.key`` for 127.0.0.1 in ``folder`` (controller-runtime's
    file names), from a CA of its own.

    Returns:
        The CA certificate (PEM): the ``caBundle`` of the webhook configurations.
    """
    ca, srv, srv_key = _ca_and_serving_cert(f"kflabs-{name}-webhook-ca", name, ("localhost",))
    _write(folder, {"tls.crt": _pem(srv), "tls.key": _pem_key(srv_key)})
    return _pem(ca)


def write_kubeconfig(path: Path, server: str, ca: Path, token: str) -> None:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "kflabs-kwok",
        "clusters": [{"name": "kflabs-kwok", "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}}],
        "users": [{"name": "kflabs-admin", "user": {"token": token}}],
        "contexts": [{"name": "kflabs-kwok",
                      "context": {"cluster": "kflabs-kwok", "user": "kflabs-admin"}}],
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)


