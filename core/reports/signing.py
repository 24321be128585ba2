"""The hospital's signature on report PDFs (PAdES), and checking one (docs/security.md 27).

The key and certificate come from the settings (`report_signing_key`, `report_signing_cert`;
production refuses to start without them). In development a self-signed ECDSA P-256 pair is
made on first use into ONE file, ``var/report-signing.pem`` (the private key, then the
certificate; mode 0600), and reused afterwards. One file, because it is written whole under a
temporary name and hard-linked into place (`os.link` never replaces an existing file): two
processes starting at once both end up with the pair that was linked first, never with one's
key and the other's certificate, which two separately written files could give.

Signing and validating are synchronous and CPU-bound: they run in a worker process, which
receives a `SigningMaterial` (picklable bytes). pyHanko is imported inside the functions that
use it, so importing this module costs the web process nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from core.settings import ConfigurationError

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "DEV_FILE",
    "FIELD_NAME",
    "SigningKeyError",
    "SigningMaterial",
    "Validation",
    "load_material",
    "sha256_of",
    "sign_pdf",
    "validate_pdf",
]

FIELD_NAME = "ConsiliumReport"  # the PDF's signature field
DEV_FILE = "report-signing.pem"  # under var_dir: development only
DEV_VALIDITY = dt.timedelta(days=3652)  # ten years
KEY_SETTING = "CONSILIUM_REPORT_SIGNING_KEY"
CERT_SETTING = "CONSILIUM_REPORT_SIGNING_CERT"
_MAX_PEM_BYTES = 1_048_576  # a key or a certificate chain is a few KB


class SigningKeyError(ConfigurationError):
    """The report signing key or certificate is missing, unreadable or unusable; the message
    names the setting (or the development file) and what to do."""


@dataclass(frozen=True)
class SigningMaterial:
    """The signing key (PKCS#8 PEM, unencrypted) and its certificate (PEM), the signing
    certificate first, then any chain. Plain bytes, so it can be sent to a worker process."""

    key_pem: bytes = field(repr=False)  # never in a log line or a traceback
    cert_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.cert_pem)[0]

    @property
    def common_name(self) -> str:
        """The signing certificate's subject common name (who the PDF says signed it)."""
        return _common_name(self.certificate.subject)


@dataclass(frozen=True)
class Validation:
    """What a PDF's signature says. `intact`: the signed bytes are unchanged; `valid`: the
    signature over them is cryptographically sound; `trusted`: the signer's certificate leads
    to the trust root given; `whole_file`: nothing was added to the file after signing.
    A file with no signature (or not a PDF at all) is all False."""

    intact: bool = False
    valid: bool = False
    trusted: bool = False
    whole_file: bool = False
    signer: str = ""
    signed_at: dt.datetime | None = None  # as the signer reported it: there is no timestamp

    @property
    def ok(self) -> bool:
        return self.intact and self.valid and self.trusted and self.whole_file


def sha256_of(data: bytes) -> str:
    """Hex SHA-256, as stored in ReportVersion.sha256 and pasted on /verify."""
    return hashlib.sha256(data).hexdigest()


# Loading the key and certificate ---------------------------------------------------------------


def load_material(settings: Settings) -> SigningMaterial:
    """The key and certificate that sign reports: from the settings when they are set,
    otherwise (development) from var/report-signing.pem, made on first use.

    Raises `SigningKeyError` with a message naming the setting when a file is missing,
    unreadable, open to other users (the key), not PEM, or when the key does not match the
    certificate."""
    key_path, cert_path = settings.report_signing_key, settings.report_signing_cert
    if key_path or cert_path:
        if not (key_path and cert_path):
            raise SigningKeyError(
                f"{KEY_SETTING} and {CERT_SETTING} go together: set both (the hospital's "
                "report signing key and its certificate), or neither in development"
            )
        key_pem = _read(Path(key_path), KEY_SETTING, secret=True)
        cert_pem = _read(Path(cert_path), CERT_SETTING, secret=False)
        return _material(key_pem, cert_pem, key_source=KEY_SETTING, cert_source=CERT_SETTING)
    if settings.is_production:  # the settings refuse this already; never make a key there
        raise SigningKeyError(f"{KEY_SETTING} and {CERT_SETTING} must be set in production")
    return _development_material(settings)


def _development_material(settings: Settings) -> SigningMaterial:
    folder = Path(settings.var_dir)
    path = folder / DEV_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _create_exclusively(path, _self_signed(settings.hospital_name))
    source = f"the development signing file {path}"
    data = _read(path, source, secret=True)
    return _material(data, data, key_source=source, cert_source=source)


def _create_exclusively(path: Path, content: bytes) -> None:
    """Write `content` to `path` (mode 0600) unless it exists: written whole under a temporary
    name first, then hard-linked into place, so nobody ever reads half a file and a file
    another process linked first is kept (theirs is then the one everybody uses)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process was first: its pair is the one
    finally:
        temp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _self_signed(hospital_name: str) -> bytes:
    """A new ECDSA P-256 key and a self-signed certificate for it, as one PEM document."""
    key = ec.generate_private_key(ec.SECP256R1())
    suffix = " report signing (development)"
    # X.509 caps both names at 64 characters.
    common_name = hospital_name[: 64 - len(suffix)].strip() + suffix
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, hospital_name[:64]),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # a clock a little behind still accepts
        .not_valid_after(now + DEV_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # Validators of PDF signatures (pyHanko's included) require non-repudiation,
            # which `cryptography` calls content commitment.
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key) + certificate.public_bytes(serialization.Encoding.PEM)


def _read(path: Path, source: str, *, secret: bool) -> bytes:
    """A PEM file's bytes; a key file must be a regular file only its owner can read."""
    label = source if source.startswith("the development") else f"{source} ({path})"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise SigningKeyError(f"{label}: there is no such file") from None
    except OSError as error:
        raise SigningKeyError(f"{label}: the file cannot be read ({error.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SigningKeyError(f"{label}: not a regular file")
        if secret and info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise SigningKeyError(
                f"{label}: mode {mode:04o} lets other users read the signing key; restrict it "
                f"with `chmod 600 {path}`"
            )
        try:
            data = handle.read(_MAX_PEM_BYTES + 1)
        except OSError as error:
            raise SigningKeyError(f"{label}: the file cannot be read ({error.strerror})") from None
    if len(data) > _MAX_PEM_BYTES:
        raise SigningKeyError(f"{label}: far too large for a key or certificate")
    return data


def _material(
    key_data: bytes, cert_data: bytes, *, key_source: str, cert_source: str
) -> SigningMaterial:
    """Check the pair and put it in the form the signer takes: the key as PKCS#8 PEM, the
    certificate that matches it first, then the rest of the chain."""
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise SigningKeyError(
            f"{key_source}: the key is protected by a passphrase; give it unencrypted, in a "
            "file only the service can read (or in the secret store)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(f"{key_source}: no PEM private key could be read") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise SigningKeyError(f"{key_source}: the key must be an ECDSA or RSA key")
    try:
        certificates = x509.load_pem_x509_certificates(cert_data)
    except ValueError:
        raise SigningKeyError(f"{cert_source}: no PEM certificate could be read") from None
    public = _spki(key.public_key())
    matching = [c for c in certificates if _spki(c.public_key()) == public]
    if not matching:
        raise SigningKeyError(
            f"{cert_source}: the certificate does not match the key in {key_source} (a key "
            "and a certificate from different pairs)"
        )
    signing = matching[0]
    if signing.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        raise SigningKeyError(
            f"{cert_source}: the certificate expired on {signing.not_valid_after_utc:%Y-%m-%d}"
        )
    try:
        usage = signing.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.content_commitment:
        raise SigningKeyError(
            f"{cert_source}: the certificate's key usage lacks non-repudiation (content "
            "commitment), which validators of signed PDFs require"
        )
    chain = [c for c in certificates if c is not signing]
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [signing, *chain])
    return SigningMaterial(key_pem=_key_pem(key), cert_pem=cert_pem)


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _common_name(name: x509.Name) -> str:
    found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(found[0].value) if found else name.rfc4514_string()


# Signing and validating (in a worker process) ---------------------------------------------------


def sign_pdf(
    pdf: bytes, material: SigningMaterial, *, reason: str, location: str, contact: str = ""
) -> bytes:
    """`pdf` with the hospital's PAdES signature added as an incremental update: the original
    bytes stay as they were, and the signature covers them and its own dictionary.

    PAdES baseline B-B: no timestamp server is reachable from here, so the signing time is the
    one the signer states (the signature dictionary's /M), not a TSA's. Synchronous and
    CPU-bound (about 0.4 s the first time, for the imports): run it in a worker process."""
    from pyhanko.keys import load_certs_from_pemder_data, load_private_key_from_pemder_data
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    key = load_private_key_from_pemder_data(material.key_pem, passphrase=None)
    certificates = list(load_certs_from_pemder_data(material.cert_pem))
    signer = signers.SimpleSigner(
        signing_cert=certificates[0],
        signing_key=key,
        cert_registry=SimpleCertificateStore.from_certs(certificates[1:]),
    )
    metadata = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME,
        reason=reason,
        location=location,
        contact_info=contact or None,
        md_algorithm="sha256",
        # ETSI.CAdES.detached: pyHanko's default is adbe.pkcs7.detached, which is not PAdES.
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    signed = signers.sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), metadata, signer=signer)
    return signed.getvalue()


def validate_pdf(pdf: bytes, cert_pem: bytes) -> Validation:
    """Check the PDF's (first) signature against `cert_pem` as the trust root, offline.

    A file without a signature, or that is not a readable PDF, gives `Validation()`: all
    False. No exception for a bad file: pyHanko raises many kinds on damaged input, and each
    means the same here (not a signed report)."""
    from pyhanko.keys import load_certs_from_pemder_data
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    try:
        signatures = PdfFileReader(BytesIO(pdf), strict=False).embedded_signatures
        if not signatures:
            return Validation()
        roots = list(load_certs_from_pemder_data(cert_pem))
        status = validate_pdf_signature(
            signatures[0], ValidationContext(trust_roots=roots, allow_fetching=False)
        )
    except Exception:
        return Validation()
    subject = status.signing_cert.subject.native if status.signing_cert else {}
    return Validation(
        intact=bool(status.intact),
        valid=bool(status.valid),
        trusted=bool(status.trusted),
        whole_file=status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
        signer=str(subject.get("common_name", "")),
        signed_at=status.signer_reported_dt,
    )
