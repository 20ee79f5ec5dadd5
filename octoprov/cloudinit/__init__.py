"""cloud-init for Linux cloud images: the NoCloud seed a KVM machine boots with.

One concept per module: ``userdata`` (the ``#cloud-config``), ``metadata`` (instance id and host
name), ``network`` (network-config version 2), ``seed`` (the ``cidata`` ISO), ``firstboot`` (the
runner that posts the callbacks on the machine) and ``yamldoc`` (how all of them become YAML).
``seed_files`` puts them together from a task's request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.answerfiles.passwords import sha512_crypt
from octoprov.cloudinit.metadata import meta_data
from octoprov.cloudinit.network import network_config
from octoprov.cloudinit.userdata import DEFAULT_ADMIN, Admin, Callback, user_data
from octoprov.validation import iana_timezone

if TYPE_CHECKING:
    from octoprov.taskspec import TaskSpec


def seed_files(spec: TaskSpec, *, task_id: int, mac_address: str, callback_url: str, callback_token: str,
               deploy_key: str | None = None) -> dict[str, str]:
    """``user-data``, ``meta-data`` and ``network-config`` for a task's request (secrets included).
    The admin password only enters as its hash, with a fresh salt each time."""
    hostname, os_section, domain = spec.hostname, spec.os, spec.domain.name
    admin = Admin(name=os_section.admin_username or DEFAULT_ADMIN,
                  password_hash=sha512_crypt(os_section.admin_password) if os_section.admin_password else None,
                  # Octoprov's deploy key too: post-install logs on with it
                  ssh_keys=(*os_section.ssh_authorized_keys, *((deploy_key,) if deploy_key else ())))
    # a request read back from storage always names its time zone; one built without it keeps the image's
    timezone = os_section.timezone if "timezone" in os_section.model_fields_set else None
    return {
        "user-data": user_data(
            hostname=hostname, fqdn=f"{hostname}.{domain}" if domain else None, admin=admin,
            callback=Callback(callback_url, task_id, callback_token),
            commands=spec.post_install.run_commands,
            timezone=iana_timezone(timezone) if timezone else None,
        ),
        "meta-data": meta_data(task_id, hostname),
        "network-config": network_config(mac_address, spec.network, domain),
    }
