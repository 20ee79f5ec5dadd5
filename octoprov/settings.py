"""Typed settings read from ``OCTOPROV_*`` environment variables.

Every setting is declared once here, with its type, default and a sentence for the
operator; ``.env.example`` is generated from these declarations (``octoprov settings
example``), so documentation and code cannot drift apart. Embedded defaults put
everything under ``OCTOPROV_DATA_DIR`` and need no server: SQLite for the database and
kombu's SQLAlchemy transport (on SQLite) for the Celery broker.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "OCTOPROV_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _setting(default, doc: str, *, secret: bool = False, example: str | None = None):
    return field(default=default, metadata={"doc": doc, "secret": secret, "example": example})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(
        Path("./var"), "Folder for everything Octoprov keeps locally: SQLite files, key, logs, uploads."
    )
    database_url: str = _setting(
        "",
        "SQLAlchemy URL of the database. Empty: SQLite at DATA_DIR/octoprov.sqlite.",
        example="postgresql://octoprov:secret@127.0.0.1:5432/octoprov",
    )
    broker_url: str = _setting(
        "",
        "Celery broker URL. Empty: kombu's SQLAlchemy transport on DATA_DIR/broker.sqlite (no server).",
        example="redis://127.0.0.1:6379/0",
    )
    secret_key: str = _setting(
        "",
        "Fernet key(s) encrypting secrets at rest, comma-separated, newest first (older keys still "
        "decrypt, for rotation). Empty: a key generated on first start in DATA_DIR/secret.key (mode 0600).",
        secret=True,
    )
    images_dir: Path | None = _setting(
        None, "Folder holding WIM, ISO and kernel images. Empty: DATA_DIR/images."
    )
    drivers_dir: Path | None = _setting(None, "Folder holding driver packs. Empty: DATA_DIR/drivers.")
    log_dir: Path | None = _setting(None, "Folder for log files. Empty: DATA_DIR/log.")
    log_level: str = _setting("INFO", "Log level: DEBUG, INFO, WARNING or ERROR.")
    api_host: str = _setting("127.0.0.1", "Address the API listens on.")
    api_port: int = _setting(8080, "TCP port the API listens on.")
    api_workers: int = _setting(2, "API server processes.")
    api_threads: int = _setting(8, "Threads per API server process.")
    public_url: str = _setting(
        "",
        "URL under which machines being provisioned reach the API. Empty: http://API_HOST:API_PORT.",
        example="http://192.0.2.10:8080",
    )
    worker_concurrency: int = _setting(2, "Parallel task slots of one Celery worker process.")
    upload_chunk_bytes: int = _setting(1024 * 1024, "Read size when streaming an uploaded image to disk.")
    page_size_max: int = _setting(500, "Largest page a list endpoint returns.")
    # -- pipeline ----------------------------------------------------------------------------------
    step_retries: int = _setting(5, "How often a step that failed with a transient error is retried.")
    step_retry_base_s: int = _setting(2, "First retry delay in seconds; each further retry doubles it.")
    step_lease_s: int = _setting(
        300, "How long a worker owns a running step before another may take it over (after a crash)."
    )
    broker_visibility_timeout_s: int = _setting(
        300, "Redis broker: seconds before an unacknowledged message (its worker died) is delivered again."
    )
    deadline_check_s: int = _setting(15, "How often the periodic job looks for wait steps past their deadline.")
    deadline_installer_started_s: int = _setting(
        1800, "Deadline for a machine to boot the installer (WinPE) and report in."
    )
    deadline_os_install_s: int = _setting(7200, "Deadline for the OS installation to report it is done.")
    deadline_first_boot_s: int = _setting(3600, "Deadline for the installed OS to report its first boot.")
    deadline_domain_join_s: int = _setting(1800, "Deadline for the machine to report its domain join.")
    # -- network boot ------------------------------------------------------------------------------
    ipxe_dir: Path = _setting(
        Path("/usr/lib/ipxe"), "Folder with the iPXE binaries (undionly.kpxe, ipxe.efi, snponly.efi): Debian's ipxe."
    )
    tftp_root: Path | None = _setting(None, "Folder the TFTP server serves (read-only). Empty: DATA_DIR/tftp.")
    tftp_host: str = _setting("0.0.0.0", "Address the TFTP server listens on.", example="192.0.2.10")  # noqa: S104
    tftp_port: int = _setting(69, "UDP port of the TFTP server.")
    proxydhcp_interface: str = _setting(
        "", "Network interface the ProxyDHCP server answers on (empty: all).", example="eth0"
    )
    proxydhcp_port: int = _setting(67, "UDP port where PXE clients broadcast DHCP requests.")
    proxydhcp_pxe_port: int = _setting(4011, "UDP port of the PXE boot server (ProxyDHCP requests from UEFI firmware).")
    boot_server_address: str = _setting(
        "", "IPv4 address PXE clients fetch boot files from (siaddr; the TFTP server). Required for ProxyDHCP.",
        example="192.0.2.10",
    )
    wimboot_path: str = _setting(
        "wimboot", "wimboot (from the iPXE project) in the images folder; it loads WinPE for Windows installs."
    )
    uefi_boot_file: str = _setting("ipxe.efi", "iPXE binary for UEFI firmware: ipxe.efi or snponly.efi.")
    pxe_enabled: bool = _setting(
        False, "`octoprov up` also runs the network-boot services (TFTP and ProxyDHCP; needs root for ports 67/69)."
    )
    boot_unknown_machines: bool = _setting(
        False, "Answer PXE clients with no active task too (they get the boot menu) instead of ignoring them."
    )
    # -- targets -----------------------------------------------------------------------------------
    ssh_key_file: Path | None = _setting(
        None, "Private SSH key (OpenSSH format) workers log on to installed Linux machines with, for "
              "post-install; cloud-init and Kickstart answers authorise its public key (octoprov deploy-key "
              "prints it). Empty: generated on first use in DATA_DIR/ssh/octoprov_ed25519 (mode 0600).",
        example="/etc/octoprov/ssh/octoprov_ed25519")
    linux_agent_installer: str = _setting(
        "agent/octoprov-agent.sh", "The agent's installer for Linux in the images folder: copied to the machine "
        "over SSH and run with LINUX_AGENT_ARGS by the install_agent step (skipped with a warning when absent).")
    scripts_dir: Path | None = _setting(
        None, "The post-install scripts library (runScripts names a file in it: .ps1 for Windows, .sh for Linux). "
              "Empty: the answers/scripts folder shipped with Octoprov.", example="/etc/octoprov/scripts")
    linux_agent_args: str = _setting("", "Arguments for the Linux agent installer (split like a shell would).")
    check_on_host: bool = _setting(
        True, "Check a new task against its hypervisor (network, storage pool, free space) before accepting it: "
              "one connection per POST /tasks. Off: the worker finds out when it creates the machine."
    )
    hyperv_secure_boot_template: str = _setting(
        "MicrosoftUEFICertificateAuthority",
        "Secure Boot template of generation 2 Hyper-V VMs with secureboot on: MicrosoftUEFICertificateAuthority "
        "(the spec's; also boots loaders signed by Microsoft's third-party UEFI CA) or MicrosoftWindows.",
    )
    # -- Active Directory: offline domain join -------------------------------------------------------
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
    djoin_transport: str = _setting("ntlm", "WinRM authentication to DJOIN_HOST: ntlm, kerberos or credssp.")
    djoin_validate_certificate: bool = _setting(
        True, "Check DJOIN_HOST's TLS certificate against the CAs the worker trusts."
    )
    # -- Windows deployment (WinPE file share, answer files) ----------------------------------------
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
    samba_smb1: bool = _setting(
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
    # -- notifications -----------------------------------------------------------------------------
    webhook_urls: str = _setting(
        "", "Comma-separated URLs called on every task's completion, failure or cancellation.",
        example="https://chat.example.internal/hooks/provisioning",
    )
    webhook_secret: str = _setting(
        "", "Key of the HMAC-SHA256 signature sent with each webhook (header X-Octoprov-Signature).", secret=True
    )
    webhook_retries: int = _setting(5, "How often a failed webhook delivery is retried (with growing delays).")
    webhook_retry_base_s: int = _setting(5, "First webhook retry delay in seconds; each further retry doubles it.")
    webhook_timeout_s: int = _setting(10, "Seconds to wait for a webhook receiver to answer.")
    # -- Octofleet (optional endpoint management) --------------------------------------------------
    octofleet_api: str = _setting(
        "", "Base URL of an Octofleet endpoint-management API to mirror new nodes, their groups and queued "
            "packages to. Empty: Octoprov's own records only.", example="https://octofleet.yourdom.local/api/v1",
    )
    octofleet_token: str = _setting("", "Bearer token for OCTOFLEET_API.", secret=True)

    # -- derived locations -------------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'octoprov.sqlite').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

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

    def ensure_dirs(self) -> None:
        """Create the local folders the embedded defaults write to."""
        for folder in (self.data_dir, self.effective_images_dir, self.effective_drivers_dir,
                       self.effective_log_dir):
            Path(folder).mkdir(parents=True, exist_ok=True)

    # -- loading -----------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Read every declared setting from ``environ`` (default: the process environment)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            if name in environ:
                values[f.name] = _convert(name, f.type, environ[name])
        values.update(overrides)
        return cls(**values)


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def _convert(name: str, type_name: str, raw: str):
    raw = raw.strip()
    if type_name == "bool":
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off", ""):
            raise SettingsError(f"{name} must be true or false, not {raw!r}")
        return raw.lower() in ("true", "1", "yes", "on")
    if type_name == "int":
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if type_name in ("Path", "Path | None"):
        return Path(raw) if raw else None if "None" in type_name else Path(".")
    return raw


def env_example() -> str:
    """The text of ``.env.example``: every setting with its documentation and an example."""
    lines = [
        "# Octoprov settings. Generated by `octoprov settings example`; do not edit by hand.",
        "# Every variable is optional: the defaults run everything locally under OCTOPROV_DATA_DIR.",
        "",
    ]
    for f in dataclasses.fields(Settings):
        doc = f.metadata["doc"]
        lines.append(f"# {doc}")
        example = f.metadata.get("example")
        if f.metadata.get("secret"):
            value = ""
        elif example is not None:
            value = example
        elif f.default is None:
            value = ""
        elif isinstance(f.default, bool):
            value = str(f.default).lower()
        else:
            value = str(f.default)
        commented = "" if example is None and not f.metadata.get("secret") else "# "
        lines.append(f"{commented}{env_name(f.name)}={value}")
        lines.append("")
    return "\n".join(lines)
