"""KVM hosts through libvirt: what networks and storage pools a host offers."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET

from octoprov.targets.base import InventoryInterface, NetworkView, NotAvailable, StorageView, TargetUnreachable


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
