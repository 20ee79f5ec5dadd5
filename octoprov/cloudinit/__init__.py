"""cloud-init for Linux cloud images: the NoCloud seed a KVM machine boots with.

One concept per module: ``userdata`` (the ``#cloud-config``), ``metadata`` (instance id and host
name), ``network`` (network-config version 2), ``seed`` (the ``cidata`` ISO), ``firstboot`` (the
runner that posts the callbacks on the machine) and ``yamldoc`` (how all of them become YAML).
``seed_files`` puts them together from a task.
"""

from __future__ import annotations

from octoprov.answerfiles.passwords import sha512_crypt
from octoprov.cloudinit.metadata import meta_data
from octoprov.cloudinit.network import network_config
from octoprov.cloudinit.userdata import DEFAULT_ADMIN, Admin, Callback, user_data
from octoprov.validation import iana_timezone


def seed_files(*, task_id: int, hostname: str, config: dict, mac_address: str, callback_url: str,
               callback_token: str, secrets: dict[str, str], deploy_key: str | None = None) -> dict[str, str]:
    """``user-data``, ``meta-data`` and ``network-config`` for a task (``config`` is its camelCase
    request, ``secrets`` its decrypted secrets). The admin password only enters as its hash, with a
    fresh salt each time."""
    admin_password = secrets.get("os.adminPassword")
    os_section = config.get("os") or {}
    domain = (config.get("domain") or {}).get("name")
    admin = Admin(name=os_section.get("adminUsername") or DEFAULT_ADMIN,
                  password_hash=sha512_crypt(admin_password) if admin_password else None,
                  # Octoprov's deploy key too: post-install logs on with it
                  ssh_keys=(*(os_section.get("sshAuthorizedKeys") or ()), *((deploy_key,) if deploy_key else ())))
    timezone = os_section.get("timezone")
    return {
        "user-data": user_data(
            hostname=hostname, fqdn=f"{hostname}.{domain}" if domain else None, admin=admin,
            callback=Callback(callback_url, task_id, callback_token),
            commands=(config.get("postInstall") or {}).get("runCommands") or (),
            timezone=iana_timezone(timezone) if timezone else None,
        ),
        "meta-data": meta_data(task_id, hostname),
        "network-config": network_config(mac_address, config.get("network") or {}, domain),
    }
