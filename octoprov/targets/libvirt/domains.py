"""A task's domain on its KVM host, as the compute, power and boot drivers share it: the process's
kept connection to the host, and only the domain tagged with the task's id is ever touched."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from octoprov.errors import PermanentError
from octoprov.targets.libvirt.connection import (
    Connect,
    Connection,
    Domain,
    kept_connection,
    libvirt_errors,
    load_libvirt,
)
from octoprov.targets.libvirt.domain_xml import task_id_of

if TYPE_CHECKING:
    from octoprov.context import TaskContext


def lookup_domain(conn: Connection, name: str) -> Domain | None:
    """The domain called ``name``, or None."""
    libvirt = load_libvirt()
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


class LibvirtDriver:
    """Base of the compute, power and boot drivers. ``connect`` replaces opening a connection (tests
    pass one shared ``test:///default`` connection); workers keep one per host and process."""

    def __init__(self, connect: Connect | None = None) -> None:
        self._connect = connect

    @contextlib.contextmanager
    def _connection(self, ctx: TaskContext) -> Iterator[Connection]:
        """The task's host, libvirt's errors turned into the target errors the pipeline understands."""
        if ctx.node is None or not ctx.node.endpoint:
            raise PermanentError("a KVM task needs a hypervisor node with a libvirt URI")
        with kept_connection(ctx.node, self._connect) as conn, libvirt_errors(ctx.node.endpoint):
            yield conn

    def _own_domain(self, conn: Connection, ctx: TaskContext) -> Domain | None:
        """This task's domain, or None when there is none; a domain of that name created by anything
        else is never touched."""
        dom = lookup_domain(conn, ctx.hostname)
        if dom is None:
            return None
        owner = task_id_of(dom.XMLDesc(load_libvirt().VIR_DOMAIN_XML_INACTIVE))
        if owner != ctx.task_id:
            who = f"task {owner}" if owner is not None else "no Octoprov task"
            raise PermanentError(f"a domain called {ctx.hostname} already exists on the host and belongs to {who}")
        return dom

    def _existing_domain(self, conn: Connection, ctx: TaskContext) -> Domain:
        """This task's domain, which must exist by now."""
        dom = self._own_domain(conn, ctx)
        if dom is None:
            raise PermanentError(f"no domain called {ctx.hostname} on the host")
        return dom
