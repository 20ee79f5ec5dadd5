"""What every offline domain join backend does: create the machine's computer account and hand
back the blob its answer file carries (so no domain credentials travel to the machine), and remove
that account again on rollback. Targets of every kind (Hyper-V, KVM, bare metal) use it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from octoprov.errors import PermanentError

if TYPE_CHECKING:
    from octoprov.context import TaskContext


class DomainJoinInterface(ABC):
    @abstractmethod
    def provision_offline_join(self, ctx: TaskContext) -> str:
        """Create the computer account and return the djoin blob."""

    @abstractmethod
    def remove_computer_account(self, ctx: TaskContext) -> str: ...


def domain_name(ctx: TaskContext) -> str:
    """The domain the task joins (the request's validation makes sure a joining task names one)."""
    name = ctx.spec.domain.name
    if not name:
        raise PermanentError("the task names no domain to join")
    return name
