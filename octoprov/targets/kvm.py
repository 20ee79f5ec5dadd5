"""KVM hosts through libvirt: what networks and storage pools a host offers, and the machines
Octoprov creates, powers and removes there (domains tagged with their task id)."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from octoprov.targets.baremetal import NoDomainJoin, NoPostInstall
from octoprov.targets.base import (
    BootInterface,
    ComputeInterface,
    InventoryInterface,
    Machine,
    NetworkView,
    NotAvailable,
    PermanentError,
    PowerInterface,
    StorageView,
    Target,
    TargetUnreachable,
)
from octoprov.targets.domain_xml import DomainSpec, domain_spec_from, domain_xml, mac_of, task_id_of, volume_names


def _libvirt():
    try:
        import libvirt
    except ImportError:  # pragma: no cover - depends on the machine
        raise NotAvailable("libvirt-python is not installed on this worker") from None
    # libvirt prints every error to stderr by default; they reach callers as exceptions instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


class LibvirtInventory(InventoryInterface):
    def __init__(self, uri: str, credentials: dict):
        self.uri = uri
        self.credentials = credentials

    @contextlib.contextmanager
    def _connection(self):
        libvirt = _libvirt()
        try:
            conn = libvirt.openReadOnly(self.uri)
        except libvirt.libvirtError as exc:
            raise TargetUnreachable(f"cannot connect to {self.uri}: {exc.get_error_message()}") from None
        try:
            yield conn
        finally:
            conn.close()

    def networks(self) -> list[NetworkView]:
        with self._connection() as conn:
            found = []
            for net in conn.listAllNetworks():
                root = ET.fromstring(net.XMLDesc(0))  # noqa: S314
                bridge = root.find("bridge")
                forward = root.find("forward")
                found.append(NetworkView(
                    name=net.name(), type="libvirt-network", active=bool(net.isActive()),
                    bridge=bridge.get("name") if bridge is not None else None,
                    # libvirt applies VLAN tags on Open vSwitch networks and on hostdev/passthrough forwards
                    vlan_capable=root.find("virtualport[@type='openvswitch']") is not None
                    or (forward is not None and forward.get("mode") in ("hostdev", "passthrough")),
                ))
            for iface in _host_bridges(conn):
                found.append(NetworkView(name=iface, type="bridge", active=True, bridge=iface, vlan_capable=True))
            return found

    def storage(self) -> list[StorageView]:
        with self._connection() as conn:
            found = []
            for pool in conn.listAllStoragePools():
                _state, capacity, _allocation, available = pool.info()
                root = ET.fromstring(pool.XMLDesc(0))  # noqa: S314
                path = root.findtext("target/path")
                found.append(StorageView(
                    name=pool.name(), type=root.get("type", "unknown"), active=bool(pool.isActive()), path=path,
                    capacity_bytes=capacity, free_bytes=available,
                ))
            return found


def _host_bridges(conn) -> list[str]:
    """Host bridges a domain can attach to directly (``<interface type='bridge'>``)."""
    libvirt = _libvirt()
    try:
        interfaces = conn.listAllInterfaces()
    except libvirt.libvirtError:  # no interface backend on this host
        return []
    bridges = []
    for iface in interfaces:
        root = ET.fromstring(iface.XMLDesc(0))  # noqa: S314
        if root.get("type") == "bridge":
            bridges.append(iface.name())
    return bridges


# --- machines -------------------------------------------------------------------------------

# libvirt error codes meaning "the host or the connection failed", worth a retry; others are permanent
_TRANSIENT_CODES = ("VIR_ERR_SYSTEM_ERROR", "VIR_ERR_RPC", "VIR_ERR_NO_CONNECT", "VIR_ERR_OPERATION_TIMEOUT",
                    "VIR_ERR_AUTH_UNAVAILABLE")


def _connect(uri: str):
    """Open a read-write connection; a host that does not answer is a transient failure."""
    libvirt = _libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise TargetUnreachable(f"cannot connect to {uri}: {exc.get_error_message()}") from None


class _LibvirtDriver:
    """Shared by the compute, power and boot drivers: one connection per call, libvirt errors turned
    into the target errors the pipeline understands.

    ``connect`` replaces :func:`_connect` (tests pass one shared ``test:///default`` connection, whose
    state lives only as long as it); connections it returns are not closed here."""

    def __init__(self, connect: Callable[[str], Any] | None = None):
        self._connect = connect

    @contextlib.contextmanager
    def _connection(self, ctx):
        libvirt = _libvirt()
        if ctx.node is None or not ctx.node.endpoint:
            raise PermanentError("a KVM task needs a hypervisor node with a libvirt URI")
        conn = self._connect(ctx.node.endpoint) if self._connect else _connect(ctx.node.endpoint)
        try:
            yield conn
        except libvirt.libvirtError as exc:
            transient = {getattr(libvirt, name, None) for name in _TRANSIENT_CODES}
            error = TargetUnreachable if exc.get_error_code() in transient else PermanentError
            raise error(f"libvirt on {ctx.node.endpoint}: {exc.get_error_message()}") from None
        finally:
            if not self._connect:
                with contextlib.suppress(Exception):
                    conn.close()

    @staticmethod
    def _lookup(conn, name: str):
        """The domain called ``name``, or None."""
        libvirt = _libvirt()
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _own_domain(self, conn, ctx):
        """This task's domain, or None when there is none; a domain of that name created by anything
        else is never touched."""
        dom = self._lookup(conn, ctx.hostname)
        if dom is None:
            return None
        owner = task_id_of(dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE))
        if owner != ctx.task_id:
            who = f"task {owner}" if owner is not None else "no Octoprov task"
            raise PermanentError(f"a domain called {ctx.hostname} already exists on the host and belongs to {who}")
        return dom


def _kvm_options(ctx) -> dict:
    return ((ctx.node.options if ctx.node else None) or {}).get("kvm") or {}


class LibvirtCompute(_LibvirtDriver, ComputeInterface):
    def validate(self, config: dict, node) -> None:
        """Nothing to check without connecting: the request model already checked the VM's shape."""

    def _pool(self, conn, ctx):
        """The node's ``kvm.storagePool`` option, else the host's first active pool."""
        libvirt = _libvirt()
        wanted = _kvm_options(ctx).get("storagePool")
        if wanted:
            try:
                pool = conn.storagePoolLookupByName(wanted)
            except libvirt.libvirtError:
                raise PermanentError(f"storage pool {wanted} does not exist on the host") from None
            if not pool.isActive():
                raise PermanentError(f"storage pool {wanted} is not active")
            return pool
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            return pool
        raise PermanentError("the host has no active storage pool")

    def _network(self, conn, ctx) -> tuple[str, bool]:
        """``vm.network.vswitch``: a libvirt network of that name, else a host bridge. Without one, the
        host's first active libvirt network."""
        libvirt = _libvirt()
        wanted = ((ctx.config.get("vm") or {}).get("network") or {}).get("vswitch")
        if wanted:
            try:
                conn.networkLookupByName(wanted)
                return wanted, False
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                    raise
                return wanted, True
        for net in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
            return net.name(), False
        raise PermanentError("the host has no active libvirt network; name a network or bridge in vm.network.vswitch")

    def _volume(self, pool, name: str):
        libvirt = _libvirt()
        try:
            return pool.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise

    def _create_volumes(self, pool, spec: DomainSpec) -> None:
        for volume in spec.disks:
            if self._volume(pool, volume.name) is not None:
                continue  # created by an earlier attempt of this task (checked before the domain was defined)
            root = ET.Element("volume")
            ET.SubElement(root, "name").text = volume.name
            ET.SubElement(root, "capacity", unit="bytes").text = str(volume.capacity_bytes)
            allocation = volume.capacity_bytes if volume.format == "raw" else 0
            ET.SubElement(root, "allocation", unit="bytes").text = str(allocation)
            target = ET.SubElement(root, "target")
            ET.SubElement(target, "format", type=volume.format)
            pool.createXML(ET.tostring(root, encoding="unicode"), 0)

    def _spec(self, conn, ctx) -> tuple[Any, DomainSpec]:
        pool = self._pool(conn, ctx)
        network, is_bridge = self._network(conn, ctx)
        return pool, domain_spec_from(ctx, pool.name(), network, is_bridge,
                                      virtio_drivers=bool(_kvm_options(ctx).get("virtioDrivers", True)))

    def planned_domain_xml(self, ctx) -> str:
        """The domain XML ``create_machine`` would define now (for dry runs); creates nothing."""
        with self._connection(ctx) as conn:
            return domain_xml(self._spec(conn, ctx)[1])

    def create_machine(self, ctx) -> Machine:
        """Define the tagged domain first, then create its volumes: a retry after a crash in between
        adopts the domain and creates what is missing, while volumes found without this task's domain
        belong to someone else and are refused rather than reused."""
        with self._connection(ctx) as conn:
            pool, spec = self._spec(conn, ctx)
            dom = self._own_domain(conn, ctx)
            if dom is not None:
                self._create_volumes(pool, spec)
                mac = mac_of(dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE))
                return Machine(dom.UUIDString(), mac, f"Adopted {ctx.hostname} created by an earlier attempt")
            taken = [volume.name for volume in spec.disks if self._volume(pool, volume.name) is not None]
            if taken:
                raise PermanentError(f"volume(s) {', '.join(taken)} already exist in pool {pool.name()} "
                                     f"without a domain of this task")
            dom = conn.defineXML(domain_xml(spec))
            self._create_volumes(pool, spec)
            mac = mac_of(dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE))
            gb = spec.memory_mib // 1024
            return Machine(dom.UUIDString(), mac, f"Created {spec.vcpus} vCPU, {gb} GB RAM, {len(spec.disks)} disks "
                                                  f"on {pool.name()}; MAC {mac}")

    def destroy_machine(self, ctx) -> str:
        """Stop, delete the volumes named after the machine, then undefine (with its UEFI variables):
        a retry after a crash half-way still finds the domain and finishes."""
        libvirt = _libvirt()
        with self._connection(ctx) as conn:
            dom = self._own_domain(conn, ctx)
            if dom is None:
                return "no machine to remove"
            if dom.isActive():
                dom.destroy()
            removed = 0
            for pool_name, name in volume_names(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), f"{ctx.hostname}-"):
                try:
                    volume = conn.storagePoolLookupByName(pool_name).storageVolLookupByName(name)
                except libvirt.libvirtError:
                    continue  # deleted by an earlier attempt, or its pool is gone
                volume.delete(0)
                removed += 1
            try:
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise
                dom.undefine()  # a driver without NVRAM support (or an old libvirt)
            return f"Removed {ctx.hostname} and {removed} volumes"


class LibvirtPower(_LibvirtDriver, PowerInterface):
    def _domain(self, conn, ctx):
        dom = self._own_domain(conn, ctx)
        if dom is None:
            raise PermanentError(f"no domain called {ctx.hostname} on the host")
        return dom

    def power_on(self, ctx) -> str:
        with self._connection(ctx) as conn:
            dom = self._domain(conn, ctx)
            if dom.isActive():
                return "Already running"
            dom.create()
            return "Powered on; booting from the network"

    def power_off(self, ctx) -> str:
        with self._connection(ctx) as conn:
            dom = self._domain(conn, ctx)
            if not dom.isActive():
                return "Already off"
            dom.destroy()
            return "Powered off"


class LibvirtBoot(_LibvirtDriver, BootInterface):
    def prepare_boot(self, ctx) -> str:
        """The PXE services find the task by its MAC; all the domain needs is its NIC first in the
        boot order (``domain_xml`` sets it; this restores it if someone changed it)."""
        libvirt = _libvirt()
        with self._connection(ctx) as conn:
            dom = self._own_domain(conn, ctx)
            if dom is None:
                raise PermanentError(f"no domain called {ctx.hostname} on the host")
            root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # noqa: S314
            nic = root.find("devices/interface")
            if nic is None:
                raise PermanentError(f"{ctx.hostname} has no network interface to boot from")
            if nic.find("boot[@order='1']") is not None:
                return "Network boot first"
            for os_boot in root.findall("os/boot"):  # per-device order and <os><boot> cannot be mixed
                root.find("os").remove(os_boot)
            order = 2
            for device in root.find("devices"):
                boot = device.find("boot")
                if device is nic:
                    continue
                if boot is not None:
                    boot.set("order", str(order))
                    order += 1
            boot = nic.find("boot")
            if boot is None:
                boot = ET.SubElement(nic, "boot")
            boot.set("order", "1")
            conn.defineXML(ET.tostring(root, encoding="unicode"))
            return "Boot order set: network first"

    def cleanup_boot(self, ctx) -> str:
        return "Nothing to remove: the boot order goes with the machine"


class NoKvmPostInstall(NoPostInstall):
    def run_item(self, ctx, item: dict) -> str:
        raise NotAvailable(f"post-install ({item['type']}) on KVM machines is not available in this version")


def kvm_target(connect: Callable[[str], Any] | None = None) -> Target:
    """``connect`` (a libvirt URI → connection) is for tests; workers open their own connections."""
    return Target(LibvirtCompute(connect), LibvirtPower(connect), LibvirtBoot(connect), NoDomainJoin(),
                  NoKvmPostInstall())
