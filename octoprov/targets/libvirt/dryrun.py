"""What a KVM task's dry run shows of the target: the domain XML ``create_machine`` would define
and, for a cloud image, the seed files its ISO would hold. Asking the host which pool and network
it would use is the only contact a dry run makes; if the host does not answer, the plan says so
instead of guessing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.errors import OctoprovError
from octoprov.targets.base import PLANNED_MAC
from octoprov.targets.libvirt.cloudimage import seed_files_for
from octoprov.targets.libvirt.compute import LibvirtCompute

if TYPE_CHECKING:
    from octoprov.context import TaskContext


def plan_artifacts(ctx: TaskContext) -> tuple[dict[str, str], list[str]]:
    seed: dict[str, str] = {}
    notes: list[str] = []
    if ctx.cloud_image is not None:
        # without a MAC in the request, libvirt picks one when it defines the domain
        seed = seed_files_for(ctx, ctx.mac_address or PLANNED_MAC)
        if not ctx.mac_address:
            notes.append(f"network-config: {PLANNED_MAC} stands for the MAC libvirt gives the domain when it is "
                         f"defined")
    try:
        return {"domain.xml": LibvirtCompute().planned_domain_xml(ctx), **seed}, notes
    except OctoprovError as exc:
        return seed, [f"domain.xml not written: {exc.message}", *notes]
