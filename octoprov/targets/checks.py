"""What ``POST /tasks`` checks of a VM request against what its hypervisor offers, the same for every
target (``ComputeInterface.validate``): a lookup's refusal becomes a 400 naming the request's field, and
the disks must fit in the free space where they go (all of them, dynamic ones too: a full datastore or
pool pauses every VM on it). And what every target checks before it creates a VM: no disk file of the
names it would create exists without a VM of the task (:func:`refuse_leftovers`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from octoprov.errors import InvalidRequest, PermanentError

if TYPE_CHECKING:
    from octoprov.taskspec import DiskSpec

GIB = 1024**3
T = TypeVar("T")


def refused_as(field: str, host: str, lookup: Callable[[], T]) -> T:
    """``lookup()``, its refusal turned into a 400 naming the request's field."""
    try:
        return lookup()
    except PermanentError as exc:
        raise InvalidRequest({field: f"{exc.message} (on {host})"}) from None


def check_disks_fit(disks: Sequence[DiskSpec], free_bytes: int, where: str) -> None:
    """A 400 on ``vm.disks`` when the disks need more than ``free_bytes``; ``where`` completes "do not
    fit …" (``in storage pool default on KVM01``)."""
    wanted = sum(disk.size_gb for disk in disks) * GIB
    if wanted > free_bytes:
        raise InvalidRequest({"vm.disks": f"{wanted / GIB:.0f} GiB of disks do not fit {where}: "
                                          f"{free_bytes / GIB:.1f} GiB free"})


def refuse_leftovers(names: Sequence[str], exist: Callable[[Sequence[str]], Sequence[bool]], where: str,
                     remedy: str = "remove them or choose another hostname") -> None:
    """Refuse when disk files (or volumes) of the ``names`` a task would create already exist although no VM
    of the task does: someone else's, or left by an earlier run, they are neither overwritten nor adopted.
    ``exist`` answers for all names at once (one round trip to the host); ``where`` completes "already
    exist(s) …" (``on HV01``)."""
    if not names:
        return
    taken = [name for name, present in zip(names, exist(names), strict=True) if present]
    if taken:
        raise PermanentError(f"{', '.join(taken)} already exist(s) {where} without a VM of this task; {remedy}")
