"""KVM hosts through libvirt: what networks and storage pools a host offers, and the machines
Octoprov creates, powers and removes there (domains tagged with their task id)."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from octoprov.errors import InvalidRequest, NotAvailable, PermanentError, TargetUnreachable
from octoprov.postinstall import MachinePostInstall
from octoprov.targets import cloudimage
from octoprov.targets.base import (
    BootInterface,
    ComputeInterface,
    InventoryInterface,
    Machine,
    NetworkView,
    PowerInterface,
    StorageView,
    Target,
)
from octoprov.targets.domain_xml import (
    GIB,
    DomainSpec,
    domain_spec_from,
    domain_xml,
    mac_of,
    task_id_of,
    volume_names,
    with_cloud_image,
)
from octoprov.targets.hyperv.domainjoin import DjoinDomainJoin
from octoprov.targets.libvirt_ssh import connection_uri


def _libvirt():
    try:
        import libvirt
    except ImportError:  # pragma: no cover - depends on the machine
        raise NotAvailable("libvirt-python is not installed on this worker") from None
    # libvirt prints every error to stderr by default; they reach callers as exceptions instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


class LibvirtInventory(InventoryInterface):
    def __init__(self, uri: str, credentials: dict, options: dict | None = None):
        self.uri = uri
        self.credentials = credentials
        self.options = options or {}

    @contextlib.contextmanager
    def _connection(self):
        conn = open_connection(self.uri, self.credentials, self.options, read_only=True)
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


def open_connection(uri: str, credentials: dict | None = None, options: dict | None = None, *,
                    read_only: bool = False):
    """Open a connection (over SSH with the node's stored key and host key, see
    :mod:`octoprov.targets.libvirt_ssh`); a host that does not answer is a transient failure."""
    libvirt = _libvirt()
    host_key = ((options or {}).get("kvm") or {}).get("hostKey")
    with connection_uri(uri, (credentials or {}).get("privateKey"), host_key) as target:
        try:
            return libvirt.openReadOnly(target) if read_only else libvirt.open(target)
        except libvirt.libvirtError as exc:
            raise TargetUnreachable(f"cannot connect to {uri}: {exc.get_error_message()}") from None


class _LibvirtDriver:
    """Shared by the compute, power and boot drivers: one connection per call, libvirt errors turned
    into the target errors the pipeline understands.

    ``connect`` replaces :func:`open_connection` (tests pass one shared ``test:///default`` connection, whose
    state lives only as long as it); connections it returns are not closed here."""

    def __init__(self, connect: Callable[[str], Any] | None = None):
        self._connect = connect

    @contextlib.contextmanager
    def _connection(self, ctx):
        libvirt = _libvirt()
        if ctx.node is None or not ctx.node.endpoint:
            raise PermanentError("a KVM task needs a hypervisor node with a libvirt URI")
        if self._connect:
            conn = self._connect(ctx.node.endpoint)
        else:
            conn = open_connection(ctx.node.endpoint, ctx.node.credentials, ctx.node.options)
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


def _refused_as(lookup, field: str, host: str, *args):
    """``lookup(*args)``, its refusal turned into a 400 naming the request's field."""
    try:
        return lookup(*args)
    except PermanentError as exc:
        raise InvalidRequest({field: f"{exc.message} (on {host})"}) from None


def _kvm_options(ctx) -> dict:
    return ((ctx.node.options if ctx.node else None) or {}).get("kvm") or {}


class LibvirtCompute(_LibvirtDriver, ComputeInterface):
    def validate(self, config: dict, node) -> None:
        """The named network or bridge and the storage pool exist on the host, and the disks fit in
        the pool's free space (all of them, dynamic ones too: a full pool pauses every VM on it).
        A host that does not answer now is no reason to refuse: the worker retries it later."""
        if node is None or not node.endpoint:
            return
        options = (node.options or {}).get("kvm") or {}
        try:
            if self._connect:
                conn = self._connect(node.endpoint)
            else:
                conn = open_connection(node.endpoint, node.credentials, node.options)
        except TargetUnreachable:
            return
        libvirt = _libvirt()
        try:
            pool = _refused_as(self._pool, "hypervisorNodeId", node.name, conn, options)
            network, is_bridge = _refused_as(self._network, "vm.network.vswitch", node.name, conn, config)
            if is_bridge and network not in _host_bridges(conn):
                raise InvalidRequest({"vm.network.vswitch": f"no libvirt network or host bridge called {network} "
                                                            f"on {node.name}"})
            _state, _capacity, _allocation, available = pool.info()
            wanted = sum(int(disk["sizeGb"]) for disk in (config.get("vm") or {}).get("disks") or []) * GIB
            if wanted > available:
                raise InvalidRequest({"vm.disks": f"{wanted / GIB:.0f} GiB of disks do not fit in storage pool "
                                                  f"{pool.name()} on {node.name}: {available / GIB:.1f} GiB free"})
        except libvirt.libvirtError:
            return  # the host failed while answering: as unreachable
        finally:
            if not self._connect:
                with contextlib.suppress(Exception):
                    conn.close()

    def _pool(self, conn, options: dict):
        """The node's ``kvm.storagePool`` option, else the host's first active pool."""
        libvirt = _libvirt()
        wanted = options.get("storagePool")
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

    def _network(self, conn, config: dict) -> tuple[str, bool]:
        """``vm.network.vswitch``: a libvirt network of that name, else a host bridge. Without one, the
        host's first active libvirt network."""
        libvirt = _libvirt()
        wanted = ((config.get("vm") or {}).get("network") or {}).get("vswitch")
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
        return cloudimage.find_volume(pool, name)

    def _create_volumes(self, pool, spec: DomainSpec, base=None) -> None:
        """The disks' volumes; a cloud image's OS disk as a qcow2 overlay on its ``base`` volume."""
        for volume in spec.disks:
            if self._volume(pool, volume.name) is not None:
                continue  # created by an earlier attempt of this task (checked before the domain was defined)
            if volume.backing:
                pool.createXML(cloudimage.volume_xml(volume.name, volume.capacity_bytes, "qcow2",
                                                     backing_path=base.path()), 0)
                continue
            allocation = volume.capacity_bytes if volume.format == "raw" else 0
            pool.createXML(cloudimage.volume_xml(volume.name, volume.capacity_bytes, volume.format,
                                                 allocation_bytes=allocation), 0)

    def _cloud_image(self, conn, pool, spec: DomainSpec, ctx) -> tuple[DomainSpec, Any]:
        """For a cloud-image task: the domain spec that boots it, and the pool's base volume (uploaded
        first if missing). The OS disk is checked against the image before anything is created."""
        image = ctx.cloud_image
        if image is None:
            return spec, None
        cloudimage.check_os_disk(spec.disks[0].capacity_bytes if spec.disks else 0, image)
        base = cloudimage.ensure_base_volume(conn, pool, image, ctx.check_cancelled)
        return with_cloud_image(spec, base.name()), base

    def _put_seed(self, conn, pool, spec: DomainSpec, dom, ctx) -> None:
        """The seed is built once the domain exists: its network-config matches the MAC libvirt gave it."""
        if spec.cdrom_volume:
            mac = mac_of(dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE))
            cloudimage.put_seed(conn, pool, spec.cdrom_volume, cloudimage.seed_for(ctx, mac))

    def _spec(self, conn, ctx) -> tuple[Any, DomainSpec]:
        pool = self._pool(conn, _kvm_options(ctx))
        network, is_bridge = self._network(conn, ctx.config)
        options = _kvm_options(ctx)
        return pool, domain_spec_from(ctx, pool.name(), network, is_bridge,
                                      virtio_drivers=bool(options.get("virtioDrivers", True)),
                                      domain_type=options.get("domainType") or "kvm")

    def planned_domain_xml(self, ctx) -> str:
        """The domain XML ``create_machine`` would define now (for dry runs); creates nothing."""
        with self._connection(ctx) as conn:
            spec = self._spec(conn, ctx)[1]
            if ctx.cloud_image is not None:
                spec = with_cloud_image(spec, cloudimage.base_volume_name(ctx.cloud_image.checksum_sha256))
            return domain_xml(spec)

    def create_machine(self, ctx) -> Machine:
        """Define the tagged domain first, then create its volumes: a retry after a crash in between
        adopts the domain and creates what is missing, while volumes found without this task's domain
        belong to someone else and are refused rather than reused."""
        with self._connection(ctx) as conn:
            pool, spec = self._spec(conn, ctx)
            spec, base = self._cloud_image(conn, pool, spec, ctx)
            dom = self._own_domain(conn, ctx)
            if dom is not None:
                self._create_volumes(pool, spec, base)
                self._put_seed(conn, pool, spec, dom, ctx)
                mac = mac_of(dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE))
                return Machine(dom.UUIDString(), mac, f"Adopted {ctx.hostname} created by an earlier attempt")
            names = [volume.name for volume in spec.disks] + ([spec.cdrom_volume] if spec.cdrom_volume else [])
            taken = [name for name in names if self._volume(pool, name) is not None]
            if taken:
                raise PermanentError(f"volume(s) {', '.join(taken)} already exist in pool {pool.name()} "
                                     f"without a domain of this task")
            dom = conn.defineXML(domain_xml(spec))
            self._create_volumes(pool, spec, base)
            self._put_seed(conn, pool, spec, dom, ctx)
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
            nic = ET.fromstring(dom.XMLDesc(0)).find("devices/interface")  # noqa: S314 - libvirt's own output
            network_first = nic is not None and nic.find("boot") is not None
            return "Powered on; booting from the network" if network_first else "Powered on; booting from disk"

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


def kvm_target(connect: Callable[[str], Any] | None = None) -> Target:
    """``connect`` (a libvirt URI → connection) is for tests; workers open their own connections."""
    return Target(LibvirtCompute(connect), LibvirtPower(connect), LibvirtBoot(connect), DjoinDomainJoin(),
                  MachinePostInstall())
