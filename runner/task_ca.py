"""A per-task CA for the egress proxy's TLS interception, and how a container comes to trust it.

When `network.methods` restricts a `limited` policy, the proxy must read HTTPS requests to
check their method. The host makes a CA for that one task, signs one leaf certificate for the
allowed domains, hands the leaf (never the CA key) to the proxy, and throws the CA key away.
The CA is name-constrained to the allowed domains, so even a copy of it vouches for nothing
else, and only that task's container is told to trust it.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runner.ca_certs import SYSTEM_BUNDLE, pem_archive

TRUST_DIR = "/usr/local/share/gantry"
TASK_CA_FILE = f"{TRUST_DIR}/task-ca.pem"
# The image's bundle plus the task CA: the tools below read one file and replace their defaults.
TASK_BUNDLE_FILE = f"{TRUST_DIR}/task-bundle.pem"
TRUST_VARIABLES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
)
# Long enough for any agent phase (the config caps timeouts far below); the key dies sooner.
VALIDITY = datetime.timedelta(days=2)
CLOCK_SKEW = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class TaskTls:
    """The CA certificate a container trusts; the leaf certificate and key the proxy serves."""

    ca_pem: bytes
    leaf_pem: bytes
    leaf_key_pem: bytes

    @property
    def proxy_pem(self) -> str:
        """Leaf key and certificate in one PEM text, as `ssl.load_cert_chain` reads it."""
        return (self.leaf_key_pem + self.leaf_pem).decode("ascii")


def _name(common_name: str) -> x509.Name:
    """A subject with only a common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _subtree(entry: str) -> str:
    """The name constraint of an allow entry: `*.x.org` and `x.org` both permit `x.org`'s tree."""
    return entry.lower().rstrip(".").removeprefix("*.")


def issue_task_tls(task_id: str, allow: Sequence[str]) -> TaskTls:
    """A CA limited to the allowed domains, one leaf for all of them; the CA key is dropped."""
    now = datetime.datetime.now(datetime.UTC)
    names = sorted({entry.lower().rstrip(".") for entry in allow})
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _ca_certificate(ca_key, task_id, names, now)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _leaf_certificate(ca_key, ca.subject, leaf_key.public_key(), names, now)
    return TaskTls(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        leaf_pem=leaf.public_bytes(serialization.Encoding.PEM),
        leaf_key_pem=leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, task_id: str, names: list[str], now: datetime.datetime
) -> x509.Certificate:
    """A self-signed CA that may only vouch for names under the allowed domains."""
    subject = _name(f"Gantry egress CA, task {task_id}"[:64])
    subtrees = sorted({_subtree(n) for n in names})
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(
            x509.NameConstraints([x509.DNSName(s) for s in subtrees], None), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )


def _leaf_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    names: list[str],
    now: datetime.datetime,
) -> x509.Certificate:
    """The proxy's server certificate: every allowed name (wildcards too) as a SAN."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(names[0][:64] if names else "gantry-egress"))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _usage(*, ca: bool) -> x509.KeyUsage:
    """Certificate signing for the CA, signatures for the leaf; nothing else."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def trust_env(bundle: str = TASK_BUNDLE_FILE) -> dict[str, str]:
    """The variables that make OpenSSL, Python, curl, pip, git and Node.js trust the bundle."""
    return dict.fromkeys(TRUST_VARIABLES, bundle)


def trust_archive(ca_pem: bytes) -> bytes:
    """A tar of the task CA at TASK_CA_FILE, for `put_archive` (`Sandbox.copy_in`) at `/`."""
    return pem_archive(TRUST_DIR, TASK_CA_FILE, ca_pem)


def trust_script(system_bundle: str = SYSTEM_BUNDLE) -> str:
    """Shell that writes TASK_BUNDLE_FILE: the image's own bundle (if any) plus the task CA."""
    return (
        "set -e; "
        f"{{ cat {system_bundle} 2>/dev/null || true; echo; cat {TASK_CA_FILE}; }} "
        f"> {TASK_BUNDLE_FILE}.tmp; chmod 644 {TASK_BUNDLE_FILE}.tmp; "
        f"mv {TASK_BUNDLE_FILE}.tmp {TASK_BUNDLE_FILE}"
    )
