"""Which boot chain a network-booting machine gets: iPXE, or the signed chain under Secure Boot.

Firmware that enforces Secure Boot starts only binaries signed by a key in its db, and iPXE has
no signature Microsoft's UEFI CA would vouch for. Such a machine gets shim (signed by Microsoft's
UEFI CA), which starts the distribution-signed GRUB, which loads a signed kernel. Whether a
machine enforces Secure Boot is not in its DHCP packets, so it is a per-task policy declared by
the task's target (``TargetType.secure_boot``): a VM's ``vm.secureboot``, a bare-metal machine's
``secureBoot`` flag.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from octoprov.models import Task, TaskStep
from octoprov.pipeline import StepStatus
from octoprov.secureboot import STEP as ENABLE_SECURE_BOOT
from octoprov.targets import registry


class BootChain(StrEnum):
    IPXE = "ipxe"  # ipxe.efi / undionly.kpxe, then the iPXE script over HTTP
    SIGNED = "signed"  # shimx64.efi, then GRUB (grubx64.efi) and its per-machine configuration over TFTP


def chain_for(session: Session, task: Task) -> BootChain:
    target = registry.find(task.target_type)
    if target is None or not target.secure_boot(session, task):
        return BootChain.IPXE
    later = session.scalar(select(TaskStep.status).where(TaskStep.task_id == task.id,
                                                         TaskStep.name == ENABLE_SECURE_BOOT))
    if later is not None and later != StepStatus.DONE:  # installs with Secure Boot off (octoprov/secureboot.py)
        return BootChain.IPXE
    return BootChain.SIGNED
