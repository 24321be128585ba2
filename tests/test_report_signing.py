"""The hospital's signature on report PDFs (core/reports/signing.py; docs/security.md 27): a
PAdES signature that validates against the hospital's certificate and fails on one changed
byte; the key kept like the master keys (0600, made once, never replaced); settings used when
given and refused, by name, when they do not fit together.

No database: these build their settings by hand (one run, not one per engine)."""

from __future__ import annotations

import datetime as dt
import pickle
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.pdf import html_to_pdf
from core.reports import signing
from core.reports.signing import SigningKeyError, SigningMaterial, Validation
from tests.conftest import make_settings

REASON = "Second opinion report"


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return html_to_pdf("<p>Hi</p>")


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> SigningMaterial:
    return signing.load_material(make_settings(tmp_path_factory.mktemp("signing"), None))


@pytest.fixture(scope="module")
def signed(pdf: bytes, material: SigningMaterial) -> bytes:
    return signing.sign_pdf(pdf, material, reason=REASON, location="Lahore", contact="x@y.z")


def _pair(common_name: str = "Test Hospital report signing") -> tuple[bytes, bytes]:
    """A key and a self-signed certificate, as a hospital's CA would issue (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _flip_inside_signed_range(signed: bytes, original: bytes) -> bytes:
    """One bit changed in the page's content stream: the file still reads as a PDF."""
    at = original.index(b"stream") + 20
    assert at < len(original)  # inside the bytes the signature covers
    changed = bytearray(signed)
    changed[at] ^= 0x01
    return bytes(changed)


# Signing and validating -------------------------------------------------------------------------


def test_a_signed_pdf_validates_against_the_hospital_certificate(
    pdf: bytes, signed: bytes, material: SigningMaterial
) -> None:
    result = signing.validate_pdf(signed, material.cert_pem)
    assert result.intact and result.valid and result.trusted and result.whole_file and result.ok
    assert result.signer == material.common_name
    assert result.signer.endswith("report signing (development)")
    assert result.signed_at is not None
    assert abs(result.signed_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=10)
    # An incremental update: the original bytes are untouched, the signature follows them.
    assert signed.startswith(pdf) and len(signed) > len(pdf)
    # PAdES (ETSI.CAdES.detached), not pyHanko's default adbe.pkcs7.detached; the reason given.
    assert b"/ETSI.CAdES.detached" in signed[len(pdf) :]
    assert REASON.encode() in signed[len(pdf) :]
    assert f"/T ({signing.FIELD_NAME})".encode() in signed[len(pdf) :]


def test_one_changed_byte_breaks_the_signature(
    pdf: bytes, signed: bytes, material: SigningMaterial
) -> None:
    changed = _flip_inside_signed_range(signed, pdf)
    result = signing.validate_pdf(changed, material.cert_pem)
    assert not result.intact and not result.ok


def test_another_hospitals_certificate_does_not_vouch_for_it(signed: bytes) -> None:
    _, stranger = _pair("Another hospital")
    result = signing.validate_pdf(signed, stranger)
    assert result.intact and not result.trusted and not result.ok


def test_an_unsigned_pdf_or_no_pdf_is_all_false(pdf: bytes, material: SigningMaterial) -> None:
    assert signing.validate_pdf(pdf, material.cert_pem) == Validation()
    assert signing.validate_pdf(b"not a pdf at all", material.cert_pem) == Validation()
    assert signing.validate_pdf(b"", material.cert_pem) == Validation()
    nothing = Validation()
    assert not (nothing.intact or nothing.valid or nothing.trusted or nothing.ok)


def test_the_material_travels_to_a_worker_and_never_shows_its_key(
    material: SigningMaterial,
) -> None:
    assert pickle.loads(pickle.dumps(material)) == material  # noqa: S301 (our own bytes)
    assert b"PRIVATE KEY" in material.key_pem
    assert "PRIVATE" not in repr(material)


def test_sha256_of_is_hex() -> None:
    assert signing.sha256_of(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


# The development key ----------------------------------------------------------------------------


def test_the_development_key_is_made_once_owner_only_and_reused(tmp_path: Path) -> None:
    var = tmp_path / "var" / "nested"  # the folder is made too
    settings = make_settings(var, None, hospital_name="St. Example")
    first = signing.load_material(settings)
    path = var / signing.DEV_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.common_name == "St. Example report signing (development)"
    certificate = first.certificate
    [organisation] = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert organisation.value == "St. Example"
    assert certificate.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=3600)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    on_disk = path.read_bytes()
    again = signing.load_material(settings)
    assert again == first and path.read_bytes() == on_disk
    assert [p.name for p in var.iterdir()] == [signing.DEV_FILE]  # no temp file left


def test_processes_starting_together_share_one_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None)
    start = threading.Barrier(6)
    found: list[SigningMaterial] = []

    def load() -> None:
        start.wait()
        found.append(signing.load_material(settings))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 6 and all(material == found[0] for material in found)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_development_key_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None)
    signing.load_material(settings)
    (tmp_path / signing.DEV_FILE).chmod(0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        signing.load_material(settings)


# Keys from the settings -------------------------------------------------------------------------


def test_the_settings_key_and_certificate_are_used_when_given(tmp_path: Path, pdf: bytes) -> None:
    key_pem, cert_pem = _pair("Lahore General report signing")
    settings = make_settings(
        tmp_path,
        None,
        report_signing_key=_write(tmp_path / "key.pem", key_pem),
        report_signing_cert=_write(tmp_path / "cert.pem", cert_pem, 0o644),
    )
    material = signing.load_material(settings)
    assert material.common_name == "Lahore General report signing"
    assert material.cert_pem == cert_pem
    assert not (tmp_path / signing.DEV_FILE).exists()  # no development key made
    signed = signing.sign_pdf(pdf, material, reason=REASON, location="Lahore")
    assert signing.validate_pdf(signed, cert_pem).ok


def test_a_key_that_does_not_match_the_certificate_is_refused_by_name(tmp_path: Path) -> None:
    key_pem, _ = _pair()
    _, other_cert = _pair()
    settings = make_settings(
        tmp_path,
        None,
        report_signing_key=_write(tmp_path / "key.pem", key_pem),
        report_signing_cert=_write(tmp_path / "cert.pem", other_cert),
    )
    with pytest.raises(SigningKeyError) as refused:
        signing.load_material(settings)
    message = str(refused.value)
    assert "CONSILIUM_REPORT_SIGNING_CERT" in message and "does not match" in message
    assert "CONSILIUM_REPORT_SIGNING_KEY" in message


@pytest.mark.parametrize(
    ("problem", "named", "words"),
    [
        ("missing_key", "CONSILIUM_REPORT_SIGNING_KEY", "no such file"),
        ("missing_cert", "CONSILIUM_REPORT_SIGNING_CERT", "no such file"),
        ("open_key", "CONSILIUM_REPORT_SIGNING_KEY", "chmod 600"),
        ("not_pem", "CONSILIUM_REPORT_SIGNING_KEY", "no PEM private key"),
        ("cert_not_pem", "CONSILIUM_REPORT_SIGNING_CERT", "no PEM certificate"),
        ("only_key", "CONSILIUM_REPORT_SIGNING_CERT", "set both"),
    ],
)
def test_unusable_settings_are_refused_naming_the_setting(
    tmp_path: Path, problem: str, named: str, words: str
) -> None:
    key_pem, cert_pem = _pair()
    key = _write(tmp_path / "key.pem", key_pem)
    cert = _write(tmp_path / "cert.pem", cert_pem)
    if problem == "missing_key":
        key = tmp_path / "absent-key.pem"
    elif problem == "missing_cert":
        cert = tmp_path / "absent-cert.pem"
    elif problem == "open_key":
        key.chmod(0o644)
    elif problem == "not_pem":
        _write(key, b"this is no key")
    elif problem == "cert_not_pem":
        _write(cert, b"this is no certificate")
    overrides: dict[str, object] = {"report_signing_key": key, "report_signing_cert": cert}
    if problem == "only_key":
        del overrides["report_signing_cert"]
    settings = make_settings(tmp_path, None, **overrides)
    with pytest.raises(SigningKeyError) as refused:
        signing.load_material(settings)
    assert named in str(refused.value) and words in str(refused.value)
    assert not (tmp_path / signing.DEV_FILE).exists()
    assert "BEGIN" not in str(refused.value)  # the message never quotes the files


def test_the_module_imports_without_pyhanko() -> None:
    """The web process imports signing.py (for the material); pyHanko loads in the worker."""
    import subprocess
    import sys

    code = (
        "import sys, core.reports.signing, core.reports.verification, core.pages.verify; "
        "print(any(name.startswith('pyhanko') for name in sys.modules))"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False", result.stderr


def test_check_config_names_the_signer_and_refuses_a_missing_key(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from core.cli import main

    monkeypatch.setenv("CONSILIUM_VAR_DIR", str(tmp_path))
    runner = CliRunner()
    made = runner.invoke(main, ["check-config"])
    assert made.exit_code == 0, made.output
    assert "report signing (development)" in made.output  # the pair made on first run
    monkeypatch.setenv("CONSILIUM_REPORT_SIGNING_KEY", str(tmp_path / "missing-key.pem"))
    monkeypatch.setenv("CONSILIUM_REPORT_SIGNING_CERT", str(tmp_path / "missing-cert.pem"))
    refused = runner.invoke(main, ["check-config"])
    assert refused.exit_code == 1
    assert (
        "CONSILIUM_REPORT_SIGNING_KEY" in refused.output
        and "configuration OK" not in refused.output
    )
