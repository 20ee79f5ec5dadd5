"""GRUB configuration for the signed boot chain (shim → GRUB → kernel): the GRUB counterpart of
the iPXE scripts in ``ipxe/``.

The signed GRUB (Debian's grubnetx64.efi) reads ``grub/grub.cfg`` from the TFTP server it was
loaded from; Octoprov's entry file there sends it on to ``grub/octoprov/<MAC>.cfg``, which the
TFTP server renders for that machine when it is asked (the same answer ``GET /pxe/boot.grub``
gives). The kernel and initrd come over TFTP too, from ``images/``, the image library: the HTTP
client of GRUB 2.06 knows no port but 80.

GRUB's script language expands ``$name`` and splits words as a shell does; inside single quotes
nothing is special but the closing quote, so every value is written as one single-quoted word (a
quote inside as ``'\\''``, as in sh). A value GRUB cannot carry (a control character: a newline
ends the command) is refused, never rendered.
"""

from __future__ import annotations

import re

from octoprov.netboot.installer import installer_arguments
from octoprov.validation.macs import canonical_mac

SHIM = "shimx64.efi"  # what ProxyDHCP names to Secure Boot firmware
GRUB = "grubx64.efi"  # the name shim loads from its own folder
SIGNED_SOURCES = {  # where Debian's packages put them, under OCTOPROV_SIGNED_BOOT_DIR
    SHIM: "shim/shimx64.efi.signed",
    GRUB: "grub/x86_64-efi-signed/grubnetx64.efi.signed",
}
ENTRY_FILE = "grub/grub.cfg"
IMAGES_FOLDER = "images"  # the TFTP folder that is the image library
_MACHINE_FILE = re.compile(r"grub/octoprov/([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})\.cfg")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

ENTRY = """\
# Octoprov: the signed GRUB reads this first (its prefix is grub/ on the boot server), then the
# configuration of this machine, named after the MAC of the card it booted from.
set timeout=0
configfile $prefix/octoprov/$net_default_mac.cfg
echo 'Octoprov: no boot configuration for this machine; booting from the local disk'
sleep 5
exit
"""


class UnsafeGrubValue(ValueError):
    """A value cannot stand in a GRUB script as one word."""


def grub_word(value: object) -> str:
    """One literal word: single-quoted, a quote inside closed, escaped and reopened."""
    text = str(value)
    if _CONTROL.search(text):
        raise UnsafeGrubValue(f"not usable as a GRUB word (control character): {text!r}")
    return "'" + text.replace("'", "'\\''") + "'"


def grub_message(value: object) -> str:
    """Text for an echo: control characters become spaces, then one quoted word."""
    return grub_word(_CONTROL.sub(" ", str(value)))


def machine_file_mac(name: str) -> str | None:
    """The MAC of a per-machine configuration file name (``grub/octoprov/<MAC>.cfg``), else None."""
    match = _MACHINE_FILE.fullmatch(name.lstrip("/"))
    if match is None:
        return None
    try:
        return canonical_mac(match[1])
    except ValueError:
        return None


def image_path(library_path: str) -> str:
    """Where GRUB finds a file of the image library on the boot server's TFTP."""
    return f"/{IMAGES_FOLDER}/{library_path.lstrip('/')}"


def install_config(*, task_id: int, hostname: str, image_name: str, kernel_path: str, initrd_path: str,
                   kernel_args: str, callback_url: str, token: str) -> str:
    """Boot the task's installer: its kernel with the image's arguments and the callback, then its initrd."""
    arguments = installer_arguments(task_id, kernel_args, callback_url, token)
    return "\n".join([
        f"# Octoprov task {task_id}: {_CONTROL.sub(' ', hostname)}, {_CONTROL.sub(' ', image_name)}",
        "set timeout=0",
        f"echo {grub_message(f'Octoprov: installing {hostname} (task {task_id})')}",
        " ".join(["linux", grub_word(image_path(kernel_path)), *map(grub_word, arguments)]),
        f"initrd {grub_word(image_path(initrd_path))}",
        "boot",
        "echo 'Octoprov: the installer could not be loaded; trying again in 10 seconds'",
        "sleep 10",
        "configfile $prefix/octoprov/$net_default_mac.cfg",
        "",
    ])


def local_boot_config(reason: str) -> str:
    """Leave GRUB: the firmware goes on to its next boot option, the local disk."""
    return "\n".join([
        f"# Octoprov: {_CONTROL.sub(' ', reason)}",
        f"echo {grub_message(f'Octoprov: {reason}; booting from the local disk')}",
        "exit",
        "",
    ])
