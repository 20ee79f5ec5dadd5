"""Post-install on the machines Octoprov installed (KVM, Hyper-V and bare-metal alike): the agent,
packages and library scripts, run on the machine itself once it reports its first boot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from octoprov.targets.base import PostInstallInterface

if TYPE_CHECKING:
    from octoprov.context import TaskContext


class MachinePostInstall(PostInstallInterface):
    """Linux machines over SSH; Windows machines over WinRM."""

    def run_item(self, ctx: TaskContext, item: dict[str, Any]) -> str:
        if ctx.os_type == "linux":
            from octoprov.postinstall.linux import run_item

            return run_item(ctx, item)
        from octoprov.postinstall.windows import run_item

        return run_item(ctx, item)
