"""Typed settings read from ``OCTOPROV_*`` environment variables.

Every setting is declared once here, with its type, range, default and a sentence for the
operator; ``.env.example`` is generated from these declarations (``octoprov settings
example``), so documentation and code cannot drift apart. The declarations are grouped by
concern, one small model per group that ``Settings`` inherits, so that attribute access stays
flat (``settings.step_retries``) while ``.env.example`` shows one headed section per group.

Embedded defaults put everything under ``OCTOPROV_DATA_DIR`` and need no server: SQLite for
the database and kombu's SQLAlchemy transport (on SQLite) for the Celery broker.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PREFIX = "OCTOPROV_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


# -- value types: what the environment's text may say ------------------------------------------------

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def _flag(value: object) -> object:
    """The words operators write in env files; an empty value (``VAR=``) means off."""
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ValueError("must be true or false")
    return word in _TRUE


def _empty_is_none(value: object) -> object:
    """``VAR=`` in an env file means "not set": the derived default applies."""
    return None if value == "" else value


def _upper(value: object) -> object:
    """Logging, gunicorn and Celery all take the level in any case; so does this setting."""
    return value.strip().upper() if isinstance(value, str) else value


Flag = Annotated[bool, BeforeValidator(_flag)]
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none)]
Port = Annotated[int, Field(ge=1, le=65535)]  # services bind a fixed, known port; tests pass 0 to servers directly
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)]
WinRmTransport = Literal["ntlm", "kerberos", "credssp"]  # what octoprov/winrm/connection.py can connect with
UefiBootFile = Literal["ipxe.efi", "snponly.efi"]  # the two UEFI binaries prepare_root copies from IPXE_DIR
SecureBootTemplate = Literal["MicrosoftUEFICertificateAuthority", "MicrosoftWindows"]
DomainJoinBackend = Literal["djoin", "samba"]  # the backends of octoprov/domainjoin/


def _role_groups(value: str) -> str:
    """A JSON object from group DNs to role names; checked at start so a typo is not found at sign-in."""
    if not value.strip():
        return ""
    try:
        mapping = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"must be a JSON object from group DNs to roles: {exc}") from None
    roles = {"viewer", "operator", "admin"}
    if not isinstance(mapping, dict) or not all(isinstance(dn, str) and "=" in dn for dn in mapping):
        raise ValueError("must be a JSON object whose keys are group DNs (CN=...,DC=...)")
    wrong = [role for role in mapping.values() if role not in roles]
    if wrong:
        raise ValueError(f"roles must be viewer, operator or admin, not {wrong[0]!r}")
    return value


RoleGroups = Annotated[str, AfterValidator(_role_groups)]


def _ldaps_url(value: str) -> str:
    """ldaps://host[:port] or nothing: a simple bind over plain LDAP would send a user's password in clear."""
    if value.strip() and not re.fullmatch(r"ldaps://[A-Za-z0-9.-]+(:\d{1,5})?/?", value.strip()):
        raise ValueError("must be ldaps://HOST or ldaps://HOST:PORT (plain ldap:// would send passwords in clear)")
    return value.strip()


LdapsUrl = Annotated[str, AfterValidator(_ldaps_url)]


def _setting(default: Any, doc: str, *, secret: bool = False, example: str | None = None) -> Any:
    """A field with its sentence for the operator; a secret stays out of ``repr()`` and ``.env.example``."""
    extra: dict[str, Any] = {"secret": secret} if example is None else {"secret": secret, "example": example}
    return Field(default, description=doc, repr=not secret, json_schema_extra=extra)


# -- the groups ----------------------------------------------------------------------------------


class StorageSettings(BaseModel):
    model_config = ConfigDict(title="Local folders and logs")

    data_dir: Path = _setting(
        Path("./var"), "Folder for everything Octoprov keeps locally: SQLite files, key, logs, uploads."
    )
    images_dir: OptionalPath = _setting(None, "Folder holding WIM, ISO and kernel images. Empty: DATA_DIR/images.")
    drivers_dir: OptionalPath = _setting(None, "Folder holding driver packs. Empty: DATA_DIR/drivers.")
    log_dir: OptionalPath = _setting(None, "Folder for log files. Empty: DATA_DIR/log.")
    log_level: LogLevel = _setting("INFO", "Log level: DEBUG, INFO, WARNING or ERROR.")


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(title="Database")

    database_url: str = _setting(
        "",
        "SQLAlchemy URL of the database. Empty: SQLite at DATA_DIR/octoprov.sqlite.",
        example="postgresql://octoprov:secret@127.0.0.1:5432/octoprov",
    )


class EncryptionSettings(BaseModel):
    model_config = ConfigDict(title="Encryption at rest")

    secret_key: str = _setting(
        "",
        "Fernet key(s) encrypting secrets at rest, comma-separated, newest first (older keys still "
        "decrypt, for rotation). Empty: a key generated on first start in DATA_DIR/secret.key (mode 0600).",
        secret=True,
    )


class BrokerSettings(BaseModel):
    model_config = ConfigDict(title="Celery broker and workers")

    broker_url: str = _setting(
        "",
        "Celery broker URL. Empty: kombu's SQLAlchemy transport on DATA_DIR/broker.sqlite (no server).",
        example="redis://127.0.0.1:6379/0",
    )
    broker_visibility_timeout_s: PositiveInt = _setting(
        300, "Redis broker: seconds before an unacknowledged message (its worker died) is delivered again."
    )
    worker_concurrency: PositiveInt = _setting(2, "Parallel task slots of one Celery worker process.")


class ApiSettings(BaseModel):
    model_config = ConfigDict(title="API")

    api_host: str = _setting("127.0.0.1", "Address the API listens on.")
    api_port: Port = _setting(8080, "TCP port the API listens on.")
    api_workers: PositiveInt = _setting(2, "API server processes.")
    api_threads: PositiveInt = _setting(8, "Threads per API server process.")
    public_url: str = _setting(
        "",
        "URL under which machines being provisioned reach the API. Empty: http://API_HOST:API_PORT.",
        example="http://192.0.2.10:8080",
    )
    media_url: str = _setting(
        "",
        "URL under which BMCs fetch a task's boot ISO for virtual-media installs (the BMC network often is not "
        "the machines' network). Empty: PUBLIC_URL.",
        example="http://192.0.2.10:8080",
    )
    trusted_proxies: NonNegativeInt = _setting(
        0, "Reverse proxies in front of the API that append the client's address to X-Forwarded-For (compose's "
           "nginx: 1). The API takes a request's address from that many entries from the header's end, which "
           "binds what a status callback may claim to where it came from. 0: the connection's own address, the "
           "header ignored. Set it only when the API cannot be reached but through those proxies.",
        example="1",
    )
    upload_chunk_bytes: PositiveInt = _setting(1024 * 1024, "Read size when streaming an uploaded image to disk.")
    page_size_max: PositiveInt = _setting(500, "Largest page a list endpoint returns.")
    audit_retention_days: NonNegativeInt = _setting(
        400, "Days the audit trail keeps an entry (who changed what, sign-ins); older ones are deleted once a day. "
             "0: kept forever."
    )


class EventSettings(BaseModel):
    model_config = ConfigDict(title="Live event streams")

    events_poll_ms: PositiveInt = _setting(
        500, "Milliseconds between two looks of an API process at the task events table for its open streams.")
    events_heartbeat_s: PositiveInt = _setting(
        15, "Seconds of silence after which a stream sends a comment line, so proxies keep it open.")
    events_max_stream_s: PositiveInt = _setting(
        300, "Seconds after which the server ends a stream; the client reconnects with Last-Event-ID (a revoked "
             "token is noticed then at the latest).")
    events_max_streams: NonNegativeInt = _setting(
        0, "Streams one API process serves at once (each holds a thread); more are answered 503 and the UI polls "
           "instead. 0: half of API_THREADS.")
    events_gap_grace_s: PositiveInt = _setting(
        5, "Seconds a stream waits for a missing event id (a transaction still open, or rolled back) before it "
           "goes on without it.")
    event_retention_days: PositiveInt = _setting(
        7, "Days the task events table keeps a row; older ones are deleted once a day (a stream resumes only "
           "within this time; a reload shows everything).")


class PipelineSettings(BaseModel):
    model_config = ConfigDict(title="Pipeline: retries, leases, deadline checks")

    step_retries: NonNegativeInt = _setting(
        5, "How often a step that failed with a transient error is retried."
    )
    step_retry_base_s: NonNegativeInt = _setting(2, "First retry delay in seconds; each further retry doubles it.")
    step_lease_s: PositiveInt = _setting(
        300, "How long a worker owns a running step before another may take it over (after a crash)."
    )
    deadline_check_s: PositiveInt = _setting(
        15, "How often the periodic job looks for wait steps past their deadline, and for lost work."
    )
    requeue_after_s: PositiveInt = _setting(
        60, "How long a task's next work step may go without a worker (its message lost to a killed worker or "
            "a broker restart, or never sent) before the periodic job queues it again; the same for a rollback "
            "that has not run."
    )


class DeadlineSettings(BaseModel):
    model_config = ConfigDict(title="Deadlines of the wait steps")

    deadline_installer_started_s: PositiveInt = _setting(
        1800, "Deadline for a machine to boot the installer (WinPE) and report in."
    )
    deadline_os_install_s: PositiveInt = _setting(7200, "Deadline for the OS installation to report it is done.")
    deadline_first_boot_s: PositiveInt = _setting(3600, "Deadline for the installed OS to report its first boot.")
    deadline_domain_join_s: PositiveInt = _setting(1800, "Deadline for the machine to report its domain join.")

    def deadline_s(self, step: str) -> int:
        """Seconds the wait step ``step`` (a name from octoprov.steps) may take. Any other name gets
        the OS installation's deadline, the longest wait, so an unforeseen step is not cut short."""
        deadlines = {
            "installer_started": self.deadline_installer_started_s,
            "os_install": self.deadline_os_install_s,
            "first_boot": self.deadline_first_boot_s,
            "domain_join": self.deadline_domain_join_s,
        }
        return deadlines.get(step, self.deadline_os_install_s)


class NetworkBootSettings(BaseModel):
    model_config = ConfigDict(title="Network boot: TFTP, ProxyDHCP, iPXE")

    ipxe_dir: Path = _setting(
        Path("/usr/lib/ipxe"), "Folder with the iPXE binaries (undionly.kpxe, ipxe.efi, snponly.efi): Debian's ipxe."
    )
    signed_boot_dir: Path = _setting(
        Path("/usr/lib"), "Root holding the signed boot chain for Secure Boot machines, as Debian lays it out: "
        "shim/shimx64.efi.signed (shim-signed) and grub/x86_64-efi-signed/grubnetx64.efi.signed "
        "(grub-efi-amd64-signed). `make signed-boot` unpacks both packages under .cache/ without installing them.",
        example="/opt/octoprov/signed-boot/usr/lib",
    )
    tftp_root: OptionalPath = _setting(None, "Folder the TFTP server serves (read-only). Empty: DATA_DIR/tftp.")
    tftp_host: str = _setting("0.0.0.0", "Address the TFTP server listens on.", example="192.0.2.10")  # noqa: S104
    tftp_port: Port = _setting(69, "UDP port of the TFTP server.")
    proxydhcp_interface: str = _setting(
        "", "Network interface the ProxyDHCP server answers on (empty: all).", example="eth0"
    )
    proxydhcp_port: Port = _setting(67, "UDP port where PXE clients broadcast DHCP requests.")
    proxydhcp_pxe_port: Port = _setting(
        4011, "UDP port of the PXE boot server (ProxyDHCP requests from UEFI firmware)."
    )
    boot_server_address: str = _setting(
        "", "IPv4 address PXE clients fetch boot files from (siaddr; the TFTP server). Required for ProxyDHCP.",
        example="192.0.2.10",
    )
    wimboot_path: str = _setting(
        "wimboot", "wimboot (from the iPXE project) in the images folder; it loads WinPE for Windows installs."
    )
    uefi_boot_file: UefiBootFile = _setting("ipxe.efi", "iPXE binary for UEFI firmware: ipxe.efi or snponly.efi.")
    pxe_enabled: Flag = _setting(
        False, "`octoprov up` also runs the network-boot services (TFTP and ProxyDHCP; needs root for ports 67/69)."
    )
    boot_unknown_machines: Flag = _setting(
        False, "Answer PXE clients with no active task too (they get the boot menu) instead of ignoring them."
    )


class EdgeSettings(BaseModel):
    model_config = ConfigDict(title="Sites: the edge's boot services at a branch (octoprov pxe --site)")

    edge_central_url: str = _setting(
        "", "The central API's URL the edge asks for its site's prepared boot answers and boot files "
        "(`octoprov pxe --site` without --central).", example="https://octoprov.example.com")
    edge_token_file: OptionalPath = _setting(
        None, "File holding the API token (operator role) the edge presents to the centre; read, never passed on "
        "the command line. Empty: DATA_DIR/edge-token.")
    edge_http_host: str = _setting("0.0.0.0", "Address the edge's HTTP server (boot scripts and files) listens on.",  # noqa: S104
                                   example="198.51.100.2")
    edge_http_port: Port = _setting(8081, "TCP port of the edge's HTTP server: the site's bootUrl points there.")
    edge_cache_dir: OptionalPath = _setting(
        None, "Where the edge keeps its prepared answers, unreported boots and cached boot files. "
        "Empty: DATA_DIR/edge/<site>.")
    edge_cache_max_bytes: PositiveInt = _setting(
        50 * 1024**3, "Bound of the edge's boot-file cache in bytes: past it the least recently used files go.")
    edge_poll_s: Annotated[float, Field(gt=0, le=3600)] = _setting(
        5.0, "How often the edge fetches its site's prepared answers and reports what it served, in seconds.")


class TargetSettings(BaseModel):
    model_config = ConfigDict(title="Targets: KVM, bare metal, post-install")

    ssh_key_file: OptionalPath = _setting(
        None, "Private SSH key (OpenSSH format) workers log on to installed Linux machines with, for "
              "post-install; cloud-init and Kickstart answers authorise its public key (octoprov deploy-key "
              "prints it). Empty: generated on first use in DATA_DIR/ssh/octoprov_ed25519 (mode 0600).",
        example="/etc/octoprov/ssh/octoprov_ed25519")
    linux_agent_installer: str = _setting(
        "agent/octoprov-agent.sh", "The agent's installer for Linux in the images folder: copied to the machine "
        "over SSH and run with LINUX_AGENT_ARGS by the install_agent step (skipped with a warning when absent).")
    scripts_dir: OptionalPath = _setting(
        None, "The post-install scripts library (runScripts names a file in it: .ps1 for Windows, .sh for Linux). "
              "Empty: the answers/scripts folder shipped with Octoprov.", example="/etc/octoprov/scripts")
    linux_agent_args: str = _setting("", "Arguments for the Linux agent installer (split like a shell would).")
    check_on_host: Flag = _setting(
        True, "Check a new task against its hypervisor (network, storage pool, free space) before accepting it: "
              "one connection per POST /tasks. Off: the worker finds out when it creates the machine."
    )


class HyperVSettings(BaseModel):
    model_config = ConfigDict(title="Hyper-V")

    hyperv_secure_boot_template: SecureBootTemplate = _setting(
        "MicrosoftUEFICertificateAuthority",
        "Secure Boot template of generation 2 Hyper-V VMs with secureboot on: MicrosoftUEFICertificateAuthority "
        "(the spec's; also boots loaders signed by Microsoft's third-party UEFI CA) or MicrosoftWindows.",
    )


class DomainJoinSettings(BaseModel):
    model_config = ConfigDict(title="Active Directory: domain join")

    domain_join_backend: DomainJoinBackend = _setting(
        "djoin", "Who makes offline domain joins: djoin (djoin.exe on DJOIN_HOST over WinRM) or samba (Samba's "
                 "net offlinejoin on the worker itself, computer accounts over LDAPS; no Windows host needed).",
    )
    domain_controller: str = _setting(
        "", "Domain controller the API and the workers talk LDAPS (port 636) to: the checks of a domain join at "
            "POST /tasks and the samba backend's computer accounts. Its name as its certificate has it. Empty: the "
            "domain's own DNS name, which Active Directory resolves to its domain controllers.",
        example="dc01.yourdom.local",
    )
    domain_ca_file: OptionalPath = _setting(
        None, "PEM file with the CA certificates that issued the domain controllers' LDAPS certificates. Empty: "
              "the CAs the system trusts.", example="/etc/octoprov/yourdom-ca.pem",
    )
    samba_join_username: str = _setting(
        "", "samba backend: the domain account that creates and deletes computer accounts (in the OUs tasks name) "
            "when a request brings no domain.serviceAccount of its own. DOMAIN\\user or user@domain.",
        example="svc-join@yourdom.local",
    )
    samba_join_password: str = _setting("", "Password of SAMBA_JOIN_USERNAME.", secret=True)
    samba_net: str = _setting(
        "net", "samba backend: Samba's net program, 4.15 or later (it has net offlinejoin). A name on PATH or a "
               "full path.",
    )
    djoin_host: str = _setting(
        "", "Management host that runs djoin.exe /provision for offline domain joins, over WinRM: a domain "
            "controller or a member server with the RSAT AD PowerShell module. Host name (HTTPS, port 5986) or "
            "URL. Empty: offline joins fail with a message saying so.", example="dc01.yourdom.local",
    )
    djoin_username: str = _setting(
        "", "Account on DJOIN_HOST: allowed to use PowerShell remoting there and to create and delete computer "
            "accounts in the OUs tasks name.", example="YOURDOM\\svc-djoin",
    )
    djoin_password: str = _setting("", "Password of DJOIN_USERNAME.", secret=True)
    djoin_transport: WinRmTransport = _setting(
        "ntlm", "WinRM authentication to DJOIN_HOST: ntlm, kerberos or credssp."
    )
    djoin_validate_certificate: Flag = _setting(
        True, "Check DJOIN_HOST's TLS certificate against the CAs the worker trusts."
    )


class WindowsSettings(BaseModel):
    model_config = ConfigDict(title="Windows deployment: WinPE file share (Samba), answer files")

    winpe_share_server: str = _setting(
        "", "Host WinPE mounts the image and driver shares from; an IP address spares WinPE a name lookup. "
            "Empty: BOOT_SERVER_ADDRESS, else the host of PUBLIC_URL.", example="192.0.2.10",
    )
    winpe_share_name: str = _setting("images", "SMB share of the images folder (read-only) WinPE applies WIMs from.")
    winpe_drivers_share_name: str = _setting("drivers", "SMB share of the drivers folder (read-only) for driver packs.")
    winpe_share_user: str = _setting(
        "", "Account WinPE mounts the shares with (a Samba user with read access only). Empty: guest access.",
        example="winpe",
    )
    winpe_share_password: str = _setting(
        "", "Password of WINPE_SHARE_USER. It is written into each task's WinPE start script, so give this "
            "account nothing but read access to the two shares.", secret=True,
    )
    samba_smb1: Flag = _setting(
        False, "Let the generated Samba configuration speak SMB1 (server min protocol = NT1, NTLMv1) for WinPE "
               "older than Windows 10 1709. Off: SMB2 and newer only.",
    )
    winpe_virtio_dir: str = _setting(
        "X:\\Windows\\System32\\drivers", "Folder inside WinPE (boot.wim) holding the VirtIO drivers viostor, "
                                        "vioscsi and netkvm (.inf with .sys and .cat) that KVM machines need.",
    )
    windows_agent_installer: str = _setting(
        "agent/octoprov-agent.msi", "The agent's MSI in the images folder; Windows machines download it from "
                                    "/boot/images/ and install it at first logon.",
    )


class SigninSettings(BaseModel):
    model_config = ConfigDict(title="Sign-in to the web UI: Active Directory, local users, sessions")

    ldap_url: LdapsUrl = _setting(
        "", "Domain controller to sign UI users in against, over LDAPS: the user's own name and password are bound "
            "(DOMAIN\\user, user@domain or user). Its name as its certificate has it. Empty: local users only "
            "(octoprov user create).", example="ldaps://dc01.yourdom.local",
    )
    ldap_base_dn: str = _setting(
        "", "Where users and the mapped groups are looked up; also gives the domain of a bare user name.",
        example="DC=yourdom,DC=local",
    )
    ldap_ca_file: OptionalPath = _setting(
        None, "PEM file with the CA certificates that issued the LDAPS certificate of LDAP_URL. Empty: the CAs "
              "the system trusts.", example="/etc/octoprov/yourdom-ca.pem",
    )
    ldap_role_groups: RoleGroups = _setting(
        "", "JSON object from AD group DNs to roles (viewer, operator, admin); members of a group, directly or "
            "through nested groups, get its role, the highest one when several match. A user in none cannot sign in.",
        example='{"CN=Octoprov Admins,OU=Groups,DC=yourdom,DC=local": "admin", '
                '"CN=Helpdesk,OU=Groups,DC=yourdom,DC=local": "operator"}',
    )
    session_hours: PositiveInt = _setting(8, "Hours a UI sign-in lasts; then the user signs in again.")
    signin_max_failures: PositiveInt = _setting(
        5, "Refused sign-ins allowed per user name within SIGNIN_WINDOW_S; more are answered 429 until the window "
           "has passed (ten times as many per client address).",
    )
    signin_window_s: PositiveInt = _setting(900, "Seconds over which refused sign-ins are counted.")


class WebhookSettings(BaseModel):
    model_config = ConfigDict(title="Webhooks")

    webhook_urls: str = _setting(
        "", "Comma-separated URLs called on every task's completion, failure or cancellation.",
        example="https://chat.example.internal/hooks/provisioning",
    )
    webhook_secret: str = _setting(
        "", "Key of the HMAC-SHA256 signature sent with each webhook (header X-Octoprov-Signature).", secret=True
    )
    webhook_retries: NonNegativeInt = _setting(
        5, "How often a failed webhook delivery is retried (with growing delays)."
    )
    webhook_retry_base_s: NonNegativeInt = _setting(
        5, "First webhook retry delay in seconds; each further retry doubles it."
    )
    webhook_timeout_s: PositiveInt = _setting(10, "Seconds to wait for a webhook receiver to answer.")


class OctofleetSettings(BaseModel):
    model_config = ConfigDict(title="Octofleet (optional endpoint management)")

    octofleet_api: str = _setting(
        "", "Base URL of an Octofleet endpoint-management API to mirror new nodes, their groups and queued "
            "packages to. Empty: Octoprov's own records only.", example="https://octofleet.yourdom.local/api/v1",
    )
    octofleet_token: str = _setting("", "Bearer token for OCTOFLEET_API.", secret=True)


class MetricsSettings(BaseModel):
    model_config = ConfigDict(title="Metrics (Prometheus)")

    metrics_token_required: Flag = _setting(
        False, "GET /metrics (the API's Prometheus metrics) asks for an API token like the management API. Off: "
               "open, as Prometheus scrapers expect; the metrics are counts and durations by state, target, step, "
               "route and event, never a host name, MAC, address or secret (docs/metrics.md).",
    )
    pxe_metrics_port: Annotated[int, Field(ge=0, le=65535)] = _setting(
        0, "TCP port where `octoprov pxe` serves its own Prometheus metrics (DHCP, TFTP, boot answers) at "
           "/metrics. 0: not served.", example="9469",
    )
    pxe_metrics_host: str = _setting("127.0.0.1", "Address the network-boot metrics listen on.",
                                     example="192.0.2.10")


class Settings(  # the groups in the order .env.example shows them
    StorageSettings, DatabaseSettings, EncryptionSettings, BrokerSettings, ApiSettings, EventSettings,
    PipelineSettings, DeadlineSettings, NetworkBootSettings, EdgeSettings, TargetSettings, HyperVSettings,
    DomainJoinSettings, WindowsSettings, SigninSettings, WebhookSettings, OctofleetSettings, MetricsSettings,
    BaseSettings,
):
    """All settings, flat: ``Settings(data_dir=...)`` takes keywords only; ``from_env`` reads the environment."""

    model_config = SettingsConfigDict(title="Octoprov settings", env_prefix=PREFIX, frozen=True, extra="forbid")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_explain(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keywords only: a Settings built in code (tests, the API's runtime) must not pick up whatever
        OCTOPROV_* the process happens to have; ``from_env`` is the one way the environment comes in."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every declared setting from ``environ`` (default: the process environment)."""
        found = _Environ(cls, os.environ if environ is None else environ)()
        return cls(**{**found, **overrides})

    # -- derived locations -------------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'octoprov.sqlite').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

    @property
    def effective_events_max_streams(self) -> int:
        return self.events_max_streams or max(1, self.api_threads // 2)

    @property
    def effective_images_dir(self) -> Path:
        return (self.images_dir or self.data_dir / "images").resolve()

    @property
    def effective_drivers_dir(self) -> Path:
        return (self.drivers_dir or self.data_dir / "drivers").resolve()

    @property
    def effective_log_dir(self) -> Path:
        return (self.log_dir or self.data_dir / "log").resolve()

    @property
    def effective_tftp_root(self) -> Path:
        return (self.tftp_root or self.data_dir / "tftp").resolve()

    @property
    def effective_scripts_dir(self) -> Path:
        return Path(self.scripts_dir or Path(__file__).resolve().parents[1] / "answers" / "scripts").resolve()

    @property
    def key_file(self) -> Path:
        return self.data_dir.resolve() / "secret.key"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def effective_media_url(self) -> str:
        return (self.media_url or self.effective_public_url).rstrip("/")

    @property
    def media_dir(self) -> Path:
        """Boot ISOs of tasks installing by virtual media, while they install."""
        return self.data_dir.resolve() / "media"

    def ensure_dirs(self) -> None:
        """Create the local folders the embedded defaults write to."""
        for folder in (self.data_dir, self.effective_images_dir, self.effective_drivers_dir,
                       self.effective_log_dir):
            Path(folder).mkdir(parents=True, exist_ok=True)


GROUPS: tuple[type[BaseModel], ...] = tuple(base for base in Settings.__bases__ if base is not BaseSettings)


class _Environ(PydanticBaseSettingsSource):
    """The ``OCTOPROV_*`` variables of one mapping, by their exact names (pydantic-settings' own
    environment source folds case and reads only ``os.environ``); values are stripped, as env
    files often carry stray blanks."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = env_name(field_name)
        return self.environ.get(name), name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for field_name, field in self.settings_cls.model_fields.items():
            raw, _, _ = self.get_field_value(field, field_name)
            if raw is not None:
                found[field_name] = raw.strip()
        return found


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def _explain(exc: ValidationError) -> str:
    """One sentence per bad value, naming the variable an operator would correct."""
    return "; ".join(_explain_one(error) for error in exc.errors())


def _explain_one(error: ErrorDetails) -> str:
    field_name = str(error["loc"][0]) if error["loc"] else ""
    name = env_name(field_name)
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        return f"{name} is no setting"
    wants = {
        "value_error": str(ctx.get("error", "")),
        "int_parsing": "must be a whole number",
        "int_type": "must be a whole number",
        "int_from_float": "must be a whole number",
        "greater_than": f"must be greater than {ctx.get('gt')}",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "literal_error": f"must be {ctx.get('expected')}",
    }.get(kind, f"is not valid ({error['msg']})")
    field = Settings.model_fields.get(field_name)
    if field is not None and _extra(field).get("secret"):
        return f"{name} {wants}"  # never echo a secret
    return f"{name} {wants}, not {error['input']!r}"


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def env_example() -> str:
    """The text of ``.env.example``: every setting with its documentation and an example, by group."""
    lines = [
        "# Octoprov settings. Generated by `octoprov settings example`; do not edit by hand.",
        "# Every variable is optional: the defaults run everything locally under OCTOPROV_DATA_DIR.",
        "",
    ]
    for group in GROUPS:
        lines += [f"# -- {group.model_config.get('title')} ".ljust(100, "-"), ""]
        for field_name in group.model_fields:
            field = Settings.model_fields[field_name]
            extra = _extra(field)
            lines.append(f"# {field.description}")
            example, secret = extra.get("example"), bool(extra.get("secret"))
            if secret:
                value = ""
            elif example is not None:
                value = str(example)
            elif field.default is None:
                value = ""
            elif isinstance(field.default, bool):
                value = str(field.default).lower()
            else:
                value = str(field.default)
            commented = "" if example is None and not secret else "# "
            lines.append(f"{commented}{env_name(field_name)}={value}")
            lines.append("")
    return "\n".join(lines)
