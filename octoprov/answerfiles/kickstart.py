"""The Kickstart file of a Linux task installed by Anaconda (RHEL and its rebuilds, Fedora).

A Linux image is installed with Kickstart when it boots Anaconda, which its kernel arguments
show (``inst.repo=``, ``inst.stage2=``): the boot script then adds ``inst.ks=`` with the task's
file URL. The root password travels as a SHA-512 crypt hash, the callbacks carry the task token.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field

from octoprov import deploykey
from octoprov.answerfiles.inputs import ImageInfo, TaskInputs
from octoprov.answerfiles.languages import language
from octoprov.answerfiles.passwords import sha512_crypt
from octoprov.answerfiles.render import render_kickstart
from octoprov.answerfiles.share import Endpoints
from octoprov.errors import InvalidRequest
from octoprov.models import Image
from octoprov.settings import Settings
from octoprov.validation import iana_timezone, parse_subnet

_ANACONDA = re.compile(r"(^|\s)inst\.(repo|stage2|ks)=")


def uses_kickstart(image: ImageInfo | Image | None) -> bool:
    return image is not None and image.os_type == "linux" and bool(_ANACONDA.search(image.kernel_args or ""))


@dataclass(frozen=True)
class StaticNetwork:
    ip: str
    netmask: str
    gateway: str | None = None
    dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kickstart:
    task_id: int
    hostname: str
    locale: str  # de_DE.UTF-8
    keyboard: str  # X layout: de
    timezone: str  # IANA: Europe/Berlin
    callback_url: str
    token: str = field(repr=False)
    device: str = "link"  # the NIC by MAC, or the first with a link
    network: StaticNetwork | None = None
    root_password_hash: str | None = field(default=None, repr=False)
    deploy_key: str | None = None  # Octoprov's public key: post-install logs on with it
    power_off: bool = False  # power off, not reboot: Octoprov turns Secure Boot on, then starts the machine
    os_disk_bytes: int = 0  # bare metal's osDiskGb: the OS goes on the first fixed disk at least this large

    def callback_body(self, event: str, message: str) -> str:
        return json.dumps({"taskId": self.task_id, "token": self.token, "event": event, "status": "ok",
                           "message": message}, separators=(",", ":"))

    def facts_format(self, event: str, message: str) -> str:
        """A printf format for the report that also carries the machine's addresses and SSH host keys
        (two %s: JSON array items the first-boot script collects on the machine)."""
        body = self.callback_body(event, message).replace("%", "%%")
        return body[:-1] + ',"addresses":[%s],"ssh":{"port":22,"hostKeys":[%s]}}'

    def render(self) -> str:
        return render_kickstart("linux/kickstart.cfg.j2", k=self)


def kickstart_for(inputs: TaskInputs, settings: Settings, *, salt: str | None = None) -> Kickstart:
    if inputs.spec.domain.join:
        raise InvalidRequest({"domain.join": "Kickstart installs do not join a domain (yet)"})
    os_spec = inputs.spec.os
    lang = language(os_spec.language)
    network = inputs.spec.network
    static = None
    if network.mode == "static":
        assert network.ip is not None and network.subnet is not None  # a static network requires both
        prefix = parse_subnet(network.subnet)
        static = StaticNetwork(network.ip, str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask),
                               network.gateway, tuple(network.dns))
    password = os_spec.admin_password
    return Kickstart(
        task_id=inputs.task_id, hostname=inputs.hostname, locale=lang.glibc_locale, keyboard=lang.xkb_layout,
        timezone=iana_timezone(os_spec.timezone),
        callback_url=Endpoints.from_settings(settings).callback, token=inputs.callback_token,
        device=inputs.mac_address or "link", network=static,
        root_password_hash=sha512_crypt(password, salt) if password else None,
        deploy_key=deploykey.public_key(settings),
        power_off=inputs.secure_boot_after_install,
        os_disk_bytes=(inputs.spec.os_disk_gb or 0) << 30,
    )
