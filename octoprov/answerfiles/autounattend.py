"""The Windows answer file (Autounattend.xml) of a task: a typed context, and its rendering.

Windows Setup reports a bad answer file late and vaguely, or loops, so the context is checked
when it is built: every text must be one XML can carry (the request's field is named when it
is not), and every first-logon command must fit Setup's 1,024 characters.

The first-logon commands are PowerShell written here, not in the template, because they
carry the callback URL and token: both are checked to consist of characters that PowerShell's
single quotes and cmd read literally, so the commands need no escaping of their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Literal

from octoprov.answerfiles.inputs import TaskInputs
from octoprov.answerfiles.languages import LANGUAGES, language
from octoprov.answerfiles.passwords import unattend_password
from octoprov.answerfiles.render import UnsafeValue, render_xml, xml_problem
from octoprov.answerfiles.share import Endpoints, WinpeShare
from octoprov.errors import InvalidRequest
from octoprov.settings import Settings
from octoprov.validation import parse_subnet

ARCHITECTURES = {"x64": "amd64", "amd64": "amd64", "arm64": "arm64", "x86": "x86"}
COMMAND_LINE_MAX = 1024  # Setup's limit for SynchronousCommand/CommandLine
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,200}$")
_POWERSHELL_UNSAFE = re.compile(r"[\"%&|<>^]")
AGENT_MSI = r"C:\Windows\Temp\octoprov-agent.msi"
WINRM_RULE = "Octoprov-WinRM-In"
# $a: the machine's IPv4 addresses (not loopback or link-local; 16 at most, as many as a callback may
# report), those of interfaces with a default route first: post-install logs on to the first. Waits
# up to five minutes for one to be assigned.
ADDRESSES = ("foreach($i in 1..30){$n=@(Get-NetIPAddress -AddressFamily IPv4 -ErrorAction Ignore).Where({"
             "$_.PrefixOrigin -ne 'WellKnown'},'First',16);if($n){break};Start-Sleep -Seconds 10};"
             "$r=(Get-NetRoute -DestinationPrefix 0.0.0.0/0 -ErrorAction Ignore).InterfaceIndex;"
             "$a=@($n.Where({$_.InterfaceIndex -in $r}).ForEach('IPAddress'))+"
             "@($n.Where({$_.InterfaceIndex -notin $r}).ForEach('IPAddress'));")

# where a context field comes from in the request, to name it when its value cannot be used
_REQUEST_FIELDS = {
    "computer_name": "hostname", "language": "os.language", "ui_language": "os.language",
    "input_locale": "os.language", "time_zone": "os.timezone", "admin_password": "os.adminPassword",
    "product_key": "os.productKey", "wim_path": "os.imageId", "administrator": "os.language",
    "network": "network", "dns_domain": "domain.name", "join.domain": "domain.name", "join.ou": "domain.ou",
    "join.username": "domain.serviceAccount.username", "join.account_domain": "domain.serviceAccount.username",
    "join.password": "domain.serviceAccount.password", "join.account_data": "domain",
}


@dataclass(frozen=True)
class StaticNetwork:
    interface: str  # the NIC's MAC as Windows writes it: 00-15-5D-01-02-03
    address: str  # CIDR: 198.51.100.50/24
    gateway: str | None = None
    dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class OfflineJoin:
    """djoin /provision's blob: the computer account is made beforehand, no credentials travel."""

    account_data: str = field(repr=False)
    kind: Literal["offline"] = "offline"


@dataclass(frozen=True)
class OnlineJoin:
    """Setup joins with an account's credentials; they stand in clear text in the specialize pass."""

    domain: str
    username: str
    account_domain: str
    password: str = field(repr=False)
    ou: str | None = None
    kind: Literal["online"] = "online"


@dataclass(frozen=True)
class Command:
    command_line: str
    description: str


@dataclass(frozen=True)
class Autounattend:
    computer_name: str
    architecture: str  # processorArchitecture: amd64, arm64, x86
    language: str  # system and user locale
    ui_language: str  # must be a language the image holds
    input_locale: str
    firmware: Literal["uefi", "bios"]
    wim_path: str
    image_index: int
    time_zone: str
    admin_password: str = field(repr=False)
    administrator: str = "Administrator"
    product_key: str | None = field(default=None, repr=False)
    network: StaticNetwork | None = None
    dns_domain: str | None = None
    join: OfflineJoin | OnlineJoin | None = None
    first_logon: tuple[Command, ...] = ()

    def __post_init__(self) -> None:
        errors: dict[str, str] = {}
        for path, text in _texts(self):
            problem = xml_problem(text)
            if problem:
                errors.setdefault(_REQUEST_FIELDS.get(path, _REQUEST_FIELDS.get(path.split(".")[0], path)), problem)
        if self.architecture not in ARCHITECTURES.values():
            errors["os.imageId"] = f"the image's architecture {self.architecture} is not one Windows Setup knows"
        if self.firmware not in ("uefi", "bios"):
            errors["vm.generation"] = f"unknown firmware {self.firmware}"
        if errors:
            raise InvalidRequest(errors)
        for command in self.first_logon:
            if len(command.command_line) > COMMAND_LINE_MAX:
                raise UnsafeValue(f"first-logon command {command.description!r} is longer than {COMMAND_LINE_MAX} "
                                  "characters, Setup's limit")

    @property
    def admin_password_value(self) -> str:
        return unattend_password(self.admin_password, "AdministratorPassword")

    @property
    def autologon_password_value(self) -> str:
        return unattend_password(self.admin_password, "Password")

    def render(self) -> str:
        return render_xml("windows/autounattend.xml.j2", u=self)


def _texts(value: object, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field path, text) for every string in a context, nested dataclasses and tuples included."""
    if is_dataclass(value):
        for item in fields(value):
            yield from _texts(getattr(value, item.name), f"{prefix}{item.name}" if not prefix else
                              f"{prefix}.{item.name}")
    elif isinstance(value, tuple):
        for item in value:
            yield from _texts(item, prefix)
    elif isinstance(value, str):
        yield prefix, value


def windows_mac(mac: str) -> str:
    """``00:15:5d:01:02:03`` → ``00-15-5D-01-02-03``, the form Windows identifies interfaces by."""
    return mac.replace(":", "-").upper()


def split_account(account: str, join_domain: str) -> tuple[str, str]:
    """(domain, user) for Setup's Credentials: ``YOURDOM\\svc`` and ``svc@yourdom.local`` are split; a
    bare ``svc`` belongs to the domain being joined."""
    if "\\" in account:
        domain, _, user = account.partition("\\")
        return domain, user
    if "@" in account:
        user, _, domain = account.partition("@")
        return domain, user
    return join_domain, account


def _powershell(script: str) -> str:
    if _POWERSHELL_UNSAFE.search(script):
        raise UnsafeValue("a first-logon command would contain characters cmd or PowerShell interpret")
    return f'powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -Command "{script}"'


def callback_command(endpoints: Endpoints, task_id: int, token: str, event: str, status: str, message: str,
                     prelude: str = "", facts: str = "") -> str:
    """POST the status callback, retried for five minutes (the network may come up after logon).
    ``status`` and ``message`` are PowerShell expressions; ``facts`` more fields of the report, as
    hashtable entries (``;addresses=$a``)."""
    if not _TOKEN.match(token):
        raise UnsafeValue("the task's callback token cannot be written into a first-logon command")
    body = (f"$b=ConvertTo-Json -Compress -InputObject @{{taskId={int(task_id)};token='{token}';event='{event}';"
            f"status={status};message={message}{facts}}};")
    post = (f"foreach($i in 1..30){{try{{Invoke-RestMethod -Method Post -Uri '{endpoints.callback}' "
            "-ContentType 'application/json' -Body $b;break}catch{Start-Sleep -Seconds 10}}")
    return _powershell(f"[Net.ServicePointManager]::SecurityProtocol='Tls12';{prelude}{body}{post}")


def agent_command(url: str) -> str:
    """Download the agent's MSI (retried) and install it quietly; the exit code is msiexec's."""
    return _powershell(
        f"[Net.ServicePointManager]::SecurityProtocol='Tls12';$f='{AGENT_MSI}';"
        f"foreach($i in 1..10){{try{{Invoke-WebRequest -UseBasicParsing -Uri '{url}' -OutFile $f;break}}"
        "catch{Start-Sleep -Seconds 10}};"
        "$p=Start-Process -FilePath msiexec.exe -ArgumentList ('/i',$f,'/qn','/norestart') -Wait -PassThru;"
        "exit $p.ExitCode"
    )


def remoting_command() -> str:
    """PowerShell remoting on WinRM's HTTP listener (port 5985), let in by a firewall rule on every
    network profile, for post-install over WinRM. Windows' own defaults stay: Negotiate (NTLM)
    logons, and unencrypted messages refused (pypsrp seals each one with the NTLM session key).
    The rule is the one the Configure-Firewall.ps1 library script narrows to chosen addresses."""
    return _powershell(
        "Enable-PSRemoting -Force -SkipNetworkProfileCheck;"
        f"New-NetFirewallRule -Name '{WINRM_RULE}' -DisplayName 'Octoprov: WinRM (TCP 5985)' -Group 'Octoprov' "
        "-Direction Inbound -Protocol TCP -LocalPort 5985 -Profile Any -Action Allow"
    )


def first_logon_commands(inputs: TaskInputs, settings: Settings) -> tuple[Command, ...]:
    """Agent, PowerShell remoting when packages or scripts are to run over it, then the callbacks
    the task waits for (first boot with the machine's addresses, domain membership), then the
    answer file Setup cached (it holds the callback token) is deleted and the session logged off."""
    endpoints = Endpoints.from_settings(settings)
    token, task_id = inputs.callback_token, inputs.task_id
    post = inputs.spec.post_install
    commands = []
    if post.install_agent:
        commands.append(Command(agent_command(endpoints.agent_installer(settings)), "Install the Octoprov agent"))
    if post.run_packages or post.run_scripts:
        commands.append(Command(remoting_command(), "Enable PowerShell remoting for post-install"))
    commands.append(Command(callback_command(endpoints, task_id, token, "first_boot", "'ok'", "'first logon'",
                                             ADDRESSES, ";addresses=$a"), "Report the first boot"))
    if inputs.spec.domain.join:
        prelude = "$c=Get-CimInstance Win32_ComputerSystem;$s='failed';if($c.PartOfDomain){$s='ok'};"
        commands.append(Command(callback_command(endpoints, task_id, token, "domain_joined", "$s",
                                                 "('domain: '+$c.Domain)", prelude), "Report the domain join"))
    commands.append(Command(r"cmd.exe /c del /f /q %WINDIR%\Panther\unattend.xml",
                            "Remove the cached answer file"))
    commands.append(Command("logoff.exe", "End the automatic logon session"))
    return tuple(commands)


def _join(inputs: TaskInputs) -> OfflineJoin | OnlineJoin | None:
    domain = inputs.spec.domain
    if not domain.join:
        return None
    if domain.method == "offline":
        blob = "".join((inputs.domain_join_blob or "").replace("\ufeff", "").replace("\x00", "").split())
        if not blob:
            raise InvalidRequest({"domain": "the offline join blob is not there yet: the prepare_domain_join step "
                                            "makes it"})
        return OfflineJoin(blob)
    service_account = domain.service_account
    if service_account is None or not service_account.username or not service_account.password:
        raise InvalidRequest({"domain.serviceAccount": "required for an online join"})
    assert domain.name is not None  # a join requires the domain's name
    account_domain, user = split_account(service_account.username, domain.name)
    return OnlineJoin(domain.name, user, account_domain, service_account.password, domain.ou)


def _network(inputs: TaskInputs) -> StaticNetwork | None:
    network = inputs.spec.network
    if network.mode != "static":
        return None
    if not inputs.mac_address:
        raise InvalidRequest({"network": "a static address is bound to the machine's MAC, which is not known yet"})
    assert network.subnet is not None  # a static network requires its address and subnet
    address = f"{network.ip}/{parse_subnet(network.subnet)}"
    return StaticNetwork(windows_mac(inputs.mac_address), address, network.gateway, tuple(network.dns))


def _image_languages(inputs: TaskInputs) -> list[str]:
    edition = (inputs.image.edition(inputs.image_index) if inputs.image else None) or {}
    return [tag for tag in edition.get("languages") or () if tag]


def administrator_name(inputs: TaskInputs) -> str:
    """The built-in Administrator's name in the image's own language (else the requested one's):
    auto-logon needs it, and post-install over WinRM logs on with it."""
    image_languages = _image_languages(inputs)
    wanted = language(inputs.spec.os.language)
    row = LANGUAGES.get(image_languages[0] if image_languages else wanted.tag)
    return row.administrator if row else "Administrator"


def autounattend_for(inputs: TaskInputs, settings: Settings) -> Autounattend:
    """The answer file of a Windows task. Locales follow the request; the UI language falls back to
    the image's own when a scanned image lacks the requested one (Setup stops otherwise)."""
    os_spec = inputs.spec.os
    password = os_spec.admin_password
    if not password:
        raise InvalidRequest({"os.adminPassword": "required for Windows: Setup stops at the password prompt "
                                                  "without it, and the first-logon commands need auto-logon"})
    image = inputs.image
    if image is None:
        raise InvalidRequest({"os.imageId": "the task's image no longer exists"})
    wanted = language(os_spec.language)
    edition = image.edition(inputs.image_index) or {}
    image_languages = _image_languages(inputs)
    ui_language = wanted.tag if not image_languages or wanted.tag in image_languages else image_languages[0]
    domain = inputs.spec.domain
    network = _network(inputs)
    share = WinpeShare.from_settings(settings)
    return Autounattend(
        computer_name=inputs.hostname,
        architecture=ARCHITECTURES.get(edition.get("architecture") or image.architecture, image.architecture),
        language=wanted.tag, ui_language=ui_language, input_locale=wanted.input_locale,
        firmware=inputs.firmware, wim_path=share.unc(share.images, image.image_path), image_index=inputs.image_index,
        time_zone=os_spec.timezone, admin_password=password,
        administrator=administrator_name(inputs),
        product_key=os_spec.product_key, network=network,
        dns_domain=domain.name if network and domain.join else None,
        join=_join(inputs), first_logon=first_logon_commands(inputs, settings),
    )
