"""Typed settings, read from the environment (and an optional `.env` file).

Every field's description is the documentation: `consilium check-config --list` prints them
and the README table is generated from the same source.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(Exception):
    """A setting has a bad value; the message says which and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONSILIUM_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    env: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses insecure defaults "
        "(no secret, debug on, insecure cookies).",
    )
    debug: bool = Field(False, description="Show tracebacks in error pages. Never in production.")
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public URL of the service; links in emails are built from it, never from "
        "the Host header.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the app answers to (JSON list). Empty: the host of base_url plus "
        "localhost and 127.0.0.1 outside production.",
    )
    host: str = Field("127.0.0.1", description="Interface `consilium serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `consilium serve` listens on.")
    var_dir: Path = Field(
        Path("var"), description="Folder for the embedded database, keys, sessions and mail."
    )
    secret_key: str | None = Field(
        None,
        description="Secret for CSRF tokens, audit-log MACs and field encryption (≥ 32 chars). "
        "Development: generated into var/secret_key (0600) on first run. Production: required.",
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "CONSILIUM_DATABASE_URL"),
        description="`postgresql://user:pass@host:5432/db`. "
        "Empty: SQLite at var/consilium.sqlite3.",
    )
    database_pool_min: int = Field(2, ge=1, description="PostgreSQL pool minimum connections.")
    database_pool_max: int = Field(10, ge=1, description="PostgreSQL pool maximum connections.")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "CONSILIUM_REDIS_URL"),
        description="`redis://127.0.0.1:6379/0` to keep sessions and rate limits in Redis "
        "(needed with several app processes). Empty: files under var/sessions.",
    )
    smtp_host: str | None = Field(
        None, description="SMTP server. Empty: emails are written to var/mail/ as .eml files."
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(None, description="SMTP user name, if the server wants one.")
    smtp_password: str | None = Field(None, description="SMTP password.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="`starttls` (port 587), `tls` (port 465) or `none` (local relay)."
    )
    mail_from: str = Field(
        "Consilium <no-reply@consilium.invalid>", description="From address of every email."
    )
    outbox_poll_seconds: float = Field(
        5.0, gt=0, description="How often the outbox worker looks for mail to send."
    )
    outbox_retry_max_seconds: int = Field(
        3600, ge=1, description="Longest wait between two tries of a message that failed."
    )
    session_idle_minutes: int = Field(30, ge=1, description="Sign out after this much inactivity.")
    session_absolute_hours: int = Field(12, ge=1, description="Sign out this long after sign-in.")
    cookie_secure: bool | None = Field(
        None, description="Send cookies only over TLS. Empty: on when base_url is https."
    )
    login_rate_per_minute: int = Field(
        20, ge=1, description="Sign-in, registration and reset requests allowed per IP per minute."
    )
    max_request_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body outside the upload routes."
    )
    password_hash_concurrency: int = Field(
        4, ge=1, description="Password hashes computed at once (each holds 64 MiB)."
    )
    documents_backend: Literal["local", "s3"] = Field(
        "local", description="Where sealed records are kept: `local` (var/documents) or `s3`."
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint URL.")
    s3_bucket: str = Field("consilium-documents", description="S3 bucket for sealed records.")
    s3_access_key: str | None = Field(None, description="S3 access key.")
    s3_secret_key: str | None = Field(None, description="S3 secret key.")
    s3_region: str = Field("us-east-1", description="S3 region.")
    master_keys: str | None = Field(
        None,
        description='Master keys as JSON `{"current": id, "keys": {id: base64}}` (from a secret '
        "store). Empty: a keyring file var/keyring.json (0600), created on first run.",
    )
    max_file_bytes: int = Field(
        4 * 1024**3, ge=1024, description="Largest single upload (a whole ZIP counts as one)."
    )
    max_case_bytes: int = Field(
        10 * 1024**3, ge=1024, description="Most record bytes one case may hold."
    )
    max_user_bytes: int = Field(
        20 * 1024**3, ge=1024, description="Most record bytes one account may upload in all."
    )
    upload_chunk_bytes: int = Field(
        8 * 1024**2,
        ge=64 * 1024,
        le=64 * 1024**2,
        description="Size of the pieces a large file is sent in; a dropped connection costs at "
        "most one piece. Files up to this size go in one request.",
    )
    upload_expiry_hours: int = Field(
        24,
        ge=1,
        description="An unfinished upload is forgotten (with its parts) after this long "
        "without a new piece.",
    )
    plugins_allowlist: list[str] | None = Field(
        None,
        description="Names of the `consilium` entry points to load (JSON list). Empty: all.",
    )
    plugins_trace: bool = Field(False, description="Log every plugin hook call (debugging).")
    time_zone: str = Field("Asia/Karachi", description="Time zone dates are shown in.")
    hospital_name: str = Field("Consilium Hospital", description="Name on pages and receipts.")
    hospital_address: str = Field(
        "1 Hospital Road, Lahore, Pakistan", description="Postal address on receipts."
    )
    report_signing_key: Path | None = Field(
        None,
        description="PEM private key that signs report PDFs (PAdES). Empty outside production: "
        "a self-signed pair is made on first run in var/ (0600). Required in production.",
    )
    report_signing_cert: Path | None = Field(
        None,
        description="PEM certificate of the report signing key (with its chain, if any); "
        "required with `report_signing_key`.",
    )
    report_workers: int = Field(
        1,
        ge=1,
        le=16,
        description="Processes that render and sign report PDFs, apart from the web process (a "
        "render holds a CPU for a second or so; the pages stay quick).",
    )
    materials_address: list[str] = Field(
        default_factory=lambda: [
            "Second Opinion Office, Pathology Reception",
            "Consilium Hospital",
            "1 Hospital Road",
            "Lahore, Pakistan",
        ],
        description="Where slides, blocks and other physical materials are posted, line by line "
        "(JSON list); shown to patients with their case reference.",
    )
    contact_email: str = Field("second-opinion@consilium.invalid", description="Contact email.")
    contact_phone: str = Field("+92 42 0000 0000", description="Contact telephone.")
    turnaround_working_days: int = Field(
        5, ge=1, description="Promised turnaround in working days, counted from `received`."
    )
    overdue_extension_working_days: int = Field(
        2,
        ge=1,
        le=20,
        description="When a report is overdue, the patient is told to expect it this many "
        "working days later (once), and the coordinators and the department lead are alerted.",
    )
    offer_response_working_days: int = Field(
        1,
        ge=1,
        le=10,
        description="How long a doctor has to accept or decline a case offered to them, in "
        "working days; then it is offered to the next doctor.",
    )
    assignment_mode: Literal["automatic", "coordinator"] = Field(
        "automatic",
        description="`automatic`: a received case is offered at once to the preferred doctor or "
        "the best match; `coordinator`: coordinators choose, with that doctor pre-selected.",
    )
    holiday_country: str = Field(
        "PK",
        min_length=2,
        max_length=2,
        description="Country whose public holidays are not working days (`holidays` package).",
    )
    weekend_days: list[int] = Field(
        default_factory=lambda: [5, 6],
        description="Days that are not working days, as a JSON list (Monday 0 … Sunday 6).",
    )
    payment_providers: list[str] = Field(
        default_factory=lambda: ["sandbox", "offline"],
        description="Payment providers offered to patients, in this order (JSON list): "
        "`sandbox` (test checkout, refused in production), `offline`, `stripe`, or a plugin's.",
    )
    offline_payment_instructions: str = Field(
        "Pay by bank transfer to Consilium Hospital, account PK00 CONS 0000 0000 0000 0000, "
        "or at the hospital's cash desk. Quote the payment reference below.",
        description="What patients are told about paying offline (bank transfer, cash desk).",
    )
    stripe_secret_key: str | None = Field(None, description="Stripe secret API key (`sk_…`).")
    stripe_webhook_secret: str | None = Field(
        None, description="Signing secret of the Stripe webhook endpoint (`whsec_…`)."
    )
    stripe_api_base: str = Field(
        "https://api.stripe.com", description="Stripe API address (tests point it elsewhere)."
    )
    stripe_webhook_tolerance_seconds: int = Field(
        300, ge=1, description="Oldest Stripe webhook signature accepted."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="Log level of the app's own loggers."
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in {"postgres", "postgresql", "sqlite"}:
            raise ValueError("must start with postgresql:// (or sqlite:///path)")
        return value or None

    @field_validator("weekend_days")
    @classmethod
    def _check_weekend(cls, value: list[int]) -> list[int]:
        if any(day not in range(7) for day in value) or len(set(value)) > 6:
            raise ValueError("must list weekdays 0 (Monday) to 6 (Sunday), leaving one working")
        return sorted(set(value))

    @field_validator("holiday_country")
    @classmethod
    def _check_holiday_country(cls, value: str) -> str:
        import holidays

        if value.upper() not in holidays.list_supported_countries():
            raise ValueError("is not a country the `holidays` package knows")
        return value.upper()

    @field_validator("secret_key")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        if not self.secret_key:
            problems.append("CONSILIUM_SECRET_KEY must be set")
        if self.debug:
            problems.append("CONSILIUM_DEBUG must be off")
        if not self.base_url.startswith("https://"):
            problems.append("CONSILIUM_BASE_URL must be https:// (TLS in front of the app)")
        if self.cookie_secure is False:
            problems.append("CONSILIUM_COOKIE_SECURE must not be false")
        if "sandbox" in self.payment_providers:
            problems.append("CONSILIUM_PAYMENT_PROVIDERS must not offer the test `sandbox`")
        if not (self.report_signing_key and self.report_signing_cert):
            problems.append(
                "CONSILIUM_REPORT_SIGNING_KEY and CONSILIUM_REPORT_SIGNING_CERT must be set "
                "(the hospital's report signing key and certificate)"
            )
        if problems:
            raise ValueError("production refuses insecure settings: " + "; ".join(problems))
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.base_url.startswith("https://")

    @property
    def cookie_prefix(self) -> str:
        # __Host- requires Secure, path=/ and no Domain: only usable over TLS.
        return "__Host-" if self.secure_cookies else ""

    @property
    def hosts(self) -> list[str]:
        if self.allowed_hosts:
            return self.allowed_hosts
        # The Host header carries the port when it is not the scheme's default.
        parts = urlsplit(self.base_url)
        hosts = [parts.hostname or "127.0.0.1", parts.netloc]
        if not self.is_production:
            for name in ("localhost", "127.0.0.1"):
                hosts += [name, f"{name}:{self.port}"]
        return sorted(set(hosts))

    @property
    def sqlite_path(self) -> Path:
        if self.database_url and self.database_url.startswith("sqlite:"):
            return Path(self.database_url.split("///", 1)[1])
        return self.var_dir / "consilium.sqlite3"

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url) and not self.database_url.startswith("sqlite:")

    @cached_property
    def secret(self) -> bytes:
        """The secret key, generated once into var/secret_key outside production."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.var_dir / "secret_key"
        if not path.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's errors into one readable message per bad field."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            env = f"CONSILIUM_{name.upper()}" if error["loc"] else ""
            lines.append(f"- {env or name}: {error['msg']}")
        raise ConfigurationError("Invalid configuration:\n" + "\n".join(lines)) from None
