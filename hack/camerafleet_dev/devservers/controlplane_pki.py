"""The certificates and kubeconfigs of one control plane (the second job of ``controlplane.py``).

A fresh CA per data directory signs the API server's serving certificate and an admin client certificate
(``O=system:masters``); RBAC is on, so any other identity gets exactly what its bindings grant. The
cluster's node components (``cluster/node.py``) get their own certificates from the same CA (``issue``).
``NodeNetwork`` is here because it decides the names the serving certificate must carry.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The user the admin kubeconfig authenticates as; ``system:masters`` bypasses RBAC.
ADMIN_USER = "camerafleet-admin"
ADMIN_GROUP = "system:masters"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"


@dataclass(frozen=True)
class NodeNetwork:
    """Where a control plane that runs Pods listens (cluster mode, ``cluster.py``): the API server binds
    the node's address, which Pods reach, and advertises it as the ``kubernetes`` Service's endpoint."""

    node_ip: str
    service_cidr: str
    pod_cidr: str

    @property
    def kubernetes_service_ip(self) -> str:
        return str(ipaddress.IPv4Network(self.service_cidr)[1])


_CERT_DAYS = 365


class _Pki:
    """The certificates and keys of one control plane, in ``directory`` (created on first use).

    ECDSA P-256 throughout: generating it takes milliseconds, and every component accepts it (the
    ServiceAccount tokens are then signed with ES256).
    """

    def __init__(self, directory: Path, network: NodeNetwork | None = None) -> None:
        self.directory = directory
        self.network = network
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.serving_cert = directory / "apiserver.crt"
        self.serving_key = directory / "apiserver.key"
        self.admin_cert = directory / "admin.crt"
        self.admin_key = directory / "admin.key"
        self.sa_key = directory / "sa.key"  # signs ServiceAccount tokens
        self.sa_pub = directory / "sa.pub"  # verifies them

    def ensure(self) -> None:
        """Create all certificates unless they exist and stay valid for at least another day."""
        if self._valid():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "camerafleet-dev-ca")])
        ca_cert = (
            self._builder(ca_name, ca_name, ca_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self._write_key(self.ca_key, ca_key)
        self.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

        service_ip = ipaddress.ip_address(
            self.network.kubernetes_service_ip if self.network else str(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE)[1])
        )
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(service_ip),
            *([x509.IPAddress(ipaddress.ip_address(self.network.node_ip))] if self.network else []),
        ]
        self._issue(self.serving_cert, self.serving_key, "kube-apiserver", [], ExtendedKeyUsageOID.SERVER_AUTH, names, ca_cert, ca_key, now)
        self._issue(self.admin_cert, self.admin_key, ADMIN_USER, [ADMIN_GROUP], ExtendedKeyUsageOID.CLIENT_AUTH, [], ca_cert, ca_key, now)

        sa_key = ec.generate_private_key(ec.SECP256R1())
        self._write_key(self.sa_key, sa_key)
        self.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def issue(self, name: str, common_name: str, organizations: list[str], *, server_ips: Sequence[str] = ()) -> tuple[Path, Path]:
        """A certificate and key signed by this CA (a client one, or a serving one for ``server_ips``),
        kept in the PKI directory as ``name.crt`` / ``name.key``: for the node's components."""
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        if cert.is_file() and key.is_file():
            return cert, key
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_ips else ExtendedKeyUsageOID.CLIENT_AUTH
        self._issue(cert, key, common_name, organizations, usage, names, ca_cert, ca_key, datetime.datetime.now(datetime.UTC))
        return cert, key

    def _valid(self) -> bool:
        needed = (self.ca_cert, self.ca_key, self.serving_cert, self.serving_key, self.admin_cert, self.admin_key, self.sa_key, self.sa_pub)
        if not all(path.is_file() for path in needed):
            return False
        soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        for path in (self.ca_cert, self.serving_cert, self.admin_cert):
            if x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc < soon:
                return False
        return True

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime.datetime
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))  # tolerate small clock skew
            .not_valid_after(now + datetime.timedelta(days=_CERT_DAYS))
        )

    def _issue(
        self,
        cert_path: Path,
        key_path: Path,
        common_name: str,
        organizations: list[str],
        usage: x509.ObjectIdentifier,
        names: list[x509.GeneralName],
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
        now: datetime.datetime,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations),
            ]
        )
        builder = (
            self._builder(subject, ca_cert.subject, key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        self._write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


def _b64_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, user: str, credentials: Mapping[str, str], namespace: str = "default"
) -> Path:
    """Write a self-contained kubeconfig (certificates inline, mode 0600) atomically."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "camerafleet", "cluster": {"server": server, "certificate-authority-data": _b64_file(ca_cert)}}],
        "users": [{"name": user, "user": dict(credentials)}],
        "contexts": [{"name": user, "context": {"cluster": "camerafleet", "user": user, "namespace": namespace}}],
        "current-context": user,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
