"""Extra CA certificates (`GANTRY_EXTRA_CA_CERTS`): added to every sandbox's trust store.

Behind a TLS-intercepting proxy, pip, npm, git and curl trust the proxy only when its CA is in
the container's bundle and the variables each tool reads point there.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from config.errors import GantryError

PEM_MARKER = b"-----BEGIN CERTIFICATE-----"
EXTRA_DIR = "/usr/local/share/gantry"
EXTRA_FILE = f"{EXTRA_DIR}/extra-ca.pem"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# update-ca-certificates (when an image has it and runs it again) keeps certificates from here.
LOCAL_CA_FILE = "/usr/local/share/ca-certificates/gantry-extra.crt"
MAX_BUNDLE_BYTES = 4 * 1024 * 1024


class ExtraCaError(GantryError):
    """The extra CA bundle cannot be read or holds no certificate."""


@dataclass(frozen=True)
class ExtraCa:
    """A PEM bundle to trust in every container."""

    pem: bytes

    @property
    def digest(self) -> str:
        """SHA-256 of the bundle: part of the cache key."""
        return hashlib.sha256(self.pem).hexdigest()

    def env(self) -> dict[str, str]:
        """The variables package managers read (Python's ssl, requests, pip; Node.js)."""
        return {
            "SSL_CERT_FILE": SYSTEM_BUNDLE,
            "REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE,
            "PIP_CERT": SYSTEM_BUNDLE,
            "NODE_EXTRA_CA_CERTS": EXTRA_FILE,
        }

    def archive(self) -> bytes:
        """A tar archive of the bundle at EXTRA_FILE, for `put_archive` at `/`."""
        return pem_archive(EXTRA_DIR, EXTRA_FILE, self.pem)

    def install_script(self) -> str:
        """Append the bundle to the system bundle once (marked by its digest); idempotent."""
        mark = f"# gantry-extra-ca {self.digest}"
        return (
            "set -e; mkdir -p /etc/ssl/certs /usr/local/share/ca-certificates; "
            f"cp {EXTRA_FILE} {LOCAL_CA_FILE}; "
            f"if ! grep -qF '{mark}' {SYSTEM_BUNDLE} 2>/dev/null; then "
            f"{{ printf '\\n%s\\n' '{mark}'; cat {EXTRA_FILE}; }} >> {SYSTEM_BUNDLE}; fi"
        )


def load_extra_ca(path: Path) -> ExtraCa:
    """Read and check a PEM bundle, or raise `ExtraCaError` saying what is wrong."""
    try:
        with path.open("rb") as handle:
            pem = handle.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise ExtraCaError(f"GANTRY_EXTRA_CA_CERTS: cannot read {path}: {exc.strerror}") from None
    if len(pem) > MAX_BUNDLE_BYTES:
        raise ExtraCaError(f"GANTRY_EXTRA_CA_CERTS: {path} is larger than 4 MiB")
    if PEM_MARKER not in pem:
        raise ExtraCaError(f"GANTRY_EXTRA_CA_CERTS: {path} holds no PEM certificate")
    return ExtraCa(pem if pem.endswith(b"\n") else pem + b"\n")


def pem_archive(directory: str, path: str, pem: bytes) -> bytes:
    """A tar of `pem` at `path`, its directories (under `directory`'s chain) made 0755, for
    `put_archive` at `/` in an image that may lack them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        parts = directory.strip("/").split("/")
        for end in range(1, len(parts) + 1):
            info = tarfile.TarInfo("/".join(parts[:end]))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo(path.strip("/"))
        info.size, info.mode = len(pem), 0o644
        tar.addfile(info, io.BytesIO(pem))
    return buffer.getvalue()
