"""Creating and removing a task's domain and its volumes on a KVM host, and checking a request
against what the host offers before it is accepted."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from octoprov.errors import InvalidRequest, PermanentError, TargetUnreachable
from octoprov.targets.base import ComputeInterface, Machine
from octoprov.targets.checks import check_disks_fit, refuse_leftovers, refused_as
from octoprov.targets.libvirt import cloudimage
from octoprov.targets.libvirt.connection import (
    Connection,
    Domain,
    Pool,
    Volume,
    kvm_options,
    load_libvirt,
    node_connection,
)
from octoprov.targets.libvirt.domain_xml import (
    LibvirtDomain,
    domain_for,
    domain_xml,
    mac_of,
    volume_names,
    with_cloud_image,
    with_install_media,
)
from octoprov.targets.libvirt.domains import LibvirtDriver
from octoprov.targets.libvirt.options import kvm_boot_options
from octoprov.targets.libvirt.placement import host_bridges, network_for, storage_pool

if TYPE_CHECKING:
    from octoprov.context import NodeInfo, TaskContext
    from octoprov.taskspec import TaskSpec, VmSpec

def _mac(dom: Domain) -> str:
    """The MAC libvirt gave the domain's NIC (one it picked itself when the request named none)."""
    mac = mac_of(dom.XMLDesc(load_libvirt().VIR_DOMAIN_XML_INACTIVE))
    if mac is None:
        raise PermanentError(f"domain {dom.name()} has no network interface")
    return mac


def _vm(spec: TaskSpec) -> VmSpec:
    """The request's ``vm`` section, which the request model requires of a KVM task."""
    if spec.vm is None:
        raise PermanentError("a KVM task needs a vm section")
    return spec.vm


class LibvirtCompute(LibvirtDriver, ComputeInterface):
    def validate(self, spec: TaskSpec, node: NodeInfo | None) -> None:
        """The named network or bridge and the storage pool exist on the host, and the disks fit in
        the pool's free space (all of them, dynamic ones too: a full pool pauses every VM on it).
        A host that does not answer now is no reason to refuse: the worker retries it later."""
        if node is None or not node.endpoint:
            return
        libvirt = load_libvirt()
        try:
            with node_connection(node, self._connect) as conn:
                self._check_host(conn, _vm(spec), node)
        except (TargetUnreachable, libvirt.libvirtError):
            return  # the host does not answer, or failed while answering

    @staticmethod
    def _check_host(conn: Connection, vm: VmSpec, node: NodeInfo) -> None:
        pool = refused_as("hypervisorNodeId", node.name, lambda: storage_pool(conn, kvm_options(node)))
        network, is_bridge = refused_as("vm.network.vswitch", node.name,
                                         lambda: network_for(conn, vm.network.vswitch))
        if is_bridge and network not in host_bridges(conn):
            raise InvalidRequest({"vm.network.vswitch": f"no libvirt network or host bridge called {network} "
                                                        f"on {node.name}"})
        boot = kvm_boot_options(node.options)
        if boot.boot_mode == "iso" and boot.install_iso and cloudimage.find_volume(pool, boot.install_iso) is None:
            raise InvalidRequest({"hypervisorNodeId": f"the installation ISO {boot.install_iso} (kvm.installIso) is "
                                                      f"not a volume of storage pool {pool.name()} on {node.name}"})
        _state, _capacity, _allocation, available = pool.info()
        check_disks_fit(vm.disks, available, f"in storage pool {pool.name()} on {node.name}")

    @staticmethod
    def _create_volumes(pool: Pool, domain: LibvirtDomain, base: Volume | None = None) -> None:
        """The disks' volumes; a cloud image's OS disk as a qcow2 overlay on its ``base`` volume."""
        for volume in domain.disks:
            if cloudimage.find_volume(pool, volume.name) is not None:
                continue  # created by an earlier attempt of this task (checked before the domain was defined)
            if volume.backing:
                if base is None:
                    raise ValueError(f"{volume.name} is an overlay, but no base volume was given")
                pool.createXML(cloudimage.volume_xml(volume.name, volume.capacity_bytes, "qcow2",
                                                     backing_path=base.path()), 0)
                continue
            allocation = volume.capacity_bytes if volume.format == "raw" else 0
            pool.createXML(cloudimage.volume_xml(volume.name, volume.capacity_bytes, volume.format,
                                                 allocation_bytes=allocation), 0)

    @staticmethod
    def _cloud_image(conn: Connection, pool: Pool, domain: LibvirtDomain,
                     ctx: TaskContext) -> tuple[LibvirtDomain, Volume | None]:
        """For a cloud-image task: the domain that boots it, and the pool's base volume (uploaded
        first if missing). The OS disk is checked against the image before anything is created."""
        image = ctx.cloud_image
        if image is None:
            return domain, None
        cloudimage.check_os_disk(domain.disks[0].capacity_bytes if domain.disks else 0, image)
        base = cloudimage.ensure_base_volume(conn, pool, image, ctx.check_cancelled)
        return with_cloud_image(domain, base.name()), base

    @staticmethod
    def _put_seed(conn: Connection, pool: Pool, domain: LibvirtDomain, dom: Domain, ctx: TaskContext) -> None:
        """The seed is built once the domain exists: its network-config matches the MAC libvirt gave it."""
        if domain.cdrom_volume:
            cloudimage.put_seed(conn, pool, domain.cdrom_volume, cloudimage.seed_for(ctx, _mac(dom)))

    @staticmethod
    def _definition(conn: Connection, ctx: TaskContext) -> tuple[Pool, LibvirtDomain]:
        """The pool and the domain the task asks for on this host."""
        options = kvm_options(ctx.node)
        pool = storage_pool(conn, options)
        vm = _vm(ctx.spec)
        network, is_bridge = network_for(conn, vm.network.vswitch)
        domain = domain_for(vm, name=ctx.hostname, task_id=ctx.task_id, mac_address=ctx.mac_address,
                            pool=pool.name(), network=network, network_is_bridge=is_bridge,
                            virtio_drivers=bool(options.get("virtioDrivers", True)),
                            domain_type=options.get("domainType") or "kvm")
        if ctx.secure_boot_after_install:  # an unsigned installer: Secure Boot comes on in enable_secure_boot
            domain = dataclasses.replace(domain, secure_boot=False)
        boot = kvm_boot_options(ctx.node.options if ctx.node else None)
        if boot.boot_mode == "iso" and boot.install_iso and ctx.cloud_image is None:
            domain = with_install_media(domain, boot.install_iso)
        return pool, domain

    def planned_domain_xml(self, ctx: TaskContext) -> str:
        """The domain XML ``create_machine`` would define now (for dry runs); creates nothing."""
        with self._connection(ctx) as conn:
            domain = self._definition(conn, ctx)[1]
            if ctx.cloud_image is not None:
                domain = with_cloud_image(domain, cloudimage.base_volume_name(ctx.cloud_image.checksum_sha256))
            return domain_xml(domain)

    def create_machine(self, ctx: TaskContext) -> Machine:
        """Define the tagged domain first, then create its volumes: a retry after a crash in between
        adopts the domain and creates what is missing, while volumes found without this task's domain
        belong to someone else and are refused rather than reused."""
        with self._connection(ctx) as conn:
            pool, domain = self._definition(conn, ctx)
            domain, base = self._cloud_image(conn, pool, domain, ctx)
            dom = self._own_domain(conn, ctx)
            if dom is not None:
                self._create_volumes(pool, domain, base)
                self._put_seed(conn, pool, domain, dom, ctx)
                return Machine(dom.UUIDString(), _mac(dom), f"Adopted {ctx.hostname} created by an earlier attempt")
            names = [volume.name for volume in domain.disks] + [
                name for name in (domain.cdrom_volume, domain.answer_cdrom) if name]
            refuse_leftovers(names, lambda wanted: [cloudimage.find_volume(pool, name) is not None for name in wanted],
                             f"in storage pool {pool.name()}")
            dom = conn.defineXML(domain_xml(domain))
            self._create_volumes(pool, domain, base)
            self._put_seed(conn, pool, domain, dom, ctx)
            mac = _mac(dom)
            gb = domain.memory_mib // 1024
            return Machine(dom.UUIDString(), mac, f"Created {domain.vcpus} vCPU, {gb} GB RAM, "
                                                  f"{len(domain.disks)} disks on {pool.name()}; MAC {mac}")

    def destroy_machine(self, ctx: TaskContext) -> str:
        """Stop, delete the volumes named after the machine, then undefine (with its UEFI variables):
        a retry after a crash half-way still finds the domain and finishes."""
        libvirt = load_libvirt()
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
