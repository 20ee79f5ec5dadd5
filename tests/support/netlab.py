"""A private boot network for end-to-end network-boot tests, recipe of ../shared/NETBOOT-LAB.md.

Two network namespaces, named after this process so parallel runs cannot meet: the *site*
namespace has a bridge (198.51.100.1/24) with a tap for QEMU and the site's DHCP server
(dnsmasq, addresses only); the *boot* namespace (198.51.100.2/24, joined to the bridge by a
veth pair) is where the boot server runs, since a ProxyDHCP server cannot share port 67 with
the site's DHCP server. Nothing touches the host's interfaces. Every process is started in its
own session and stopped by process group, and the namespaces are deleted, even when a test fails.

Run as a module (``python -m tests.support.netlab router-advertisements IFACE``) it sends the router
advertisements that end iPXE's ~12 s wait for IPv6 autoconfiguration at each stage.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT, namespaces
from tests.support.processes import Managed, stop_group, stop_groups

PREFIX = "opv"  # namespaces are opv<pid>s and opv<pid>b
SITE_ADDRESS = "198.51.100.1"
BOOT_ADDRESS = "198.51.100.2"
DHCP_RANGE = "198.51.100.100,198.51.100.150,10m"
BRIDGE, TAP, SITE_VETH, BOOT_VETH = "br0", "tap0", "vsite", "vboot"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Secure Boot enforced: Microsoft's KEK and db (with the UEFI CA that signs shim) enrolled
OVMF_CODE_SECURE = Path("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
OVMF_VARS_MS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
QEMU_VIRTIO_ROM = Path("/usr/lib/ipxe/qemu/pxe-virtio.rom")  # ipxe-qemu: QEMU's BIOS NIC ROM is iPXE
SERCON_PORT = struct.pack("<H", 0x3F8)  # SeaBIOS copies the screen (so iPXE's) to COM1


def unusable_reason() -> str | None:
    """Why the lab cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "network namespaces, a bridge and ports 67/69 need root"
    for program in ("ip", "qemu-system-x86_64", "dnsmasq", "apt-get", "dpkg-deb", "ss", "curl"):
        if shutil.which(program) is None:
            return f"{program} is not installed (make system-packages)"
    for path in (OVMF_CODE, OVMF_VARS, QEMU_VIRTIO_ROM, Path("/usr/lib/ipxe/ipxe.efi"), Path("/bin/busybox")):
        if not path.is_file():
            return f"{path} is missing (make system-packages)"
    return namespaces.unusable(PREFIX)


def remove_stale_namespaces() -> None:
    """Namespaces of earlier runs whose pytest was killed before it could clean up: the PID in
    the name is gone. Their leftover processes (QEMU, dnsmasq, octoprov) are killed by PID first."""
    namespaces.remove_stale(PREFIX, "s|b|probe")


@dataclass
class Vm:
    process: subprocess.Popen
    serial: Path
    started: float

    def console(self) -> str:
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def stop(self) -> None:
        stop_group(self.process, grace=10)


class Lab(Managed):
    """The two namespaces and the processes running in them; a context manager that undoes all.
    ``prefix_length`` narrows the boot network (24: all of 198.51.100.0/24), leaving room for networks of the
    boot namespace's own (a container engine refuses a subnet that overlaps a route)."""

    prefix_length = 24

    def __init__(self, workdir: Path, prefix: str = PREFIX, name: str = "", site_address: str = SITE_ADDRESS,
                 boot_address: str = BOOT_ADDRESS, dhcp_range: str = DHCP_RANGE):
        """``prefix``, ``name`` and the addresses let several labs live at once (tests/support/multisite.py):
        namespaces ``<prefix><pid><name>s`` and ``...b``; the defaults are the one lab of the e2e tests."""
        self.workdir = workdir
        tag = f"{prefix}{os.getpid()}{name}"
        self.site, self.boot = tag + "s", tag + "b"
        self.site_address, self.boot_address, self.dhcp_range = site_address, boot_address, dhcp_range
        self.processes: list[subprocess.Popen] = []
        self._namespaces: list[str] = []

    def _create(self) -> None:
        remove_stale_namespaces()
        for namespace in (self.site, self.boot):
            namespaces.ip("netns", "add", namespace)
            self._namespaces.append(namespace)
            namespaces.ip("-n", namespace, "link", "set", "lo", "up")
        # No duplicate address detection: the bridge's link-local address is usable at once, so the
        # router advertisements can leave from it right away.
        # (net sysctls belong to the namespace of the writer; without IPv6 this fails and RAs are moot.)
        self.run(self.site, "sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad", check=False)
        s = ("-n", self.site)
        namespaces.ip(*s, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        namespaces.ip(*s, "addr", "add", f"{self.site_address}/{self.prefix_length}", "dev", BRIDGE)
        namespaces.ip(*s, "tuntap", "add", "dev", TAP, "mode", "tap")
        namespaces.ip(*s, "link", "set", TAP, "master", BRIDGE, "up")
        namespaces.ip(*s, "link", "add", SITE_VETH, "type", "veth", "peer", "name", BOOT_VETH, "netns", self.boot)
        namespaces.ip(*s, "link", "set", SITE_VETH, "master", BRIDGE, "up")
        namespaces.ip(*s, "link", "set", BRIDGE, "up")
        namespaces.ip("-n", self.boot, "addr", "add", f"{self.boot_address}/{self.prefix_length}", "dev", BOOT_VETH)
        namespaces.ip("-n", self.boot, "link", "set", BOOT_VETH, "up")

    def close(self) -> None:
        stop_groups(self.processes, grace=10)
        self.processes.clear()
        for namespace in reversed(self._namespaces):
            namespaces.delete(namespace)
        self._namespaces.clear()

    # -- processes ---------------------------------------------------------------------------------

    def run(self, namespace: str, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("check", True)
        return subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True,
                              timeout=60, **kwargs)

    def start(self, namespace: str, argv: list[str], log_name: str, **kwargs) -> subprocess.Popen:
        """A process in ``namespace``, in its own session, output to ``log_name`` in the work folder.
        `ip netns exec` execs the program, so the PID (and the process group) is the program's."""
        log = open(self.workdir / log_name, "ab")  # noqa: SIM115 - the child keeps it; closed below
        try:
            process = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        finally:
            log.close()
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        stop_group(process, grace=10)
        if process in self.processes:
            self.processes.remove(process)

    def log(self, log_name: str) -> str:
        path = self.workdir / log_name
        return path.read_text(errors="replace") if path.exists() else ""

    def start_site_dhcp(self, next_server: str | None = None, router: str | None = None) -> subprocess.Popen:
        """The site's DHCP server: addresses only, no boot options (dnsmasq, as the LAB recipe has it).
        ``next_server``: the one boot setting a site may have to add, siaddr, which the signed GRUB
        2.06 reads instead of the ProxyDHCP answer (docs/secure-boot.md). ``router``: the site's gateway
        (dnsmasq's own address without it)."""
        extra = [f"--dhcp-boot=,,{next_server}"] if next_server else []
        extra += [f"--dhcp-option=option:router,{router}"] if router else []
        return self.start(self.site, [
            "dnsmasq", *extra, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--no-ping",
            "--bind-interfaces", f"--interface={BRIDGE}", f"--dhcp-range={self.dhcp_range}",
            f"--dhcp-leasefile={self.workdir / 'dnsmasq.leases'}", "--log-dhcp", "--log-facility=-",
            "--pid-file", "--user=root", "--group=root",
        ], "dnsmasq.log")

    def start_router_advertisements(self) -> subprocess.Popen:
        return self.start(self.site, [sys.executable, "-m", "tests.support.netlab", "router-advertisements", BRIDGE],
                          "radv.log", cwd=ROOT)

    def wait_listening(self, namespace: str, protocol: str, ports: set[int], timeout: float = 30,
                       process: subprocess.Popen | None = None) -> None:
        """Until something in ``namespace`` listens on every port (``ss``; protocol "t" or "u")."""
        deadline = time.monotonic() + timeout
        while True:
            listing = self.run(namespace, "ss", f"-{protocol}lnH").stdout
            bound = {int(match) for match in re.findall(r":(\d+)\s", listing)}
            if ports <= bound:
                return
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode} before listening")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {sorted(ports - bound)} in {namespace} after {timeout} s")
            time.sleep(0.2)

    # -- virtual machines --------------------------------------------------------------------------

    def boot_vm(self, name: str, mac: str, firmware: str = "bios", nic_rom: bool = True,
                http_boot_only: bool = False) -> Vm:
        """A diskless VM on the bridge that boots from the network (QEMU, TCG: no usable KVM here).

        ``firmware`` "bios" is SeaBIOS with QEMU's iPXE ROM (the screen copied to the serial log);
        "uefi" is OVMF; "uefi-secureboot" is OVMF with Microsoft's keys enrolled and Secure Boot
        enforced (q35 with SMM, the variable store behind SMM). ``nic_rom=False`` removes the NIC's
        iPXE ROM, so the firmware's own PXE client boots first, as on real hardware. ``http_boot_only``
        switches OVMF's PXE off (its fw_cfg knobs), so UEFI HTTP boot is its only network boot option."""
        serial = self.workdir / f"{name}.serial.log"
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-display", "none", "-nodefaults",
                "-no-reboot", "-serial", f"file:{serial}",
                "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no"]
        nic = f"virtio-net-pci,netdev=n0,mac={mac},bootindex=1" + ("" if nic_rom else ",romfile=")
        argv += firmware_argv(firmware, self.workdir, name)
        if http_boot_only:
            argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
                     "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
                     "-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no"]
        argv += ["-device", nic, "-boot", "n"]
        process = self.start(self.site, argv, f"{name}.qemu.log")
        return Vm(process, serial, time.monotonic())


def firmware_argv(firmware: str, workdir: Path, name: str) -> list[str]:
    """QEMU's machine and firmware arguments for ``firmware`` (see ``Lab.boot_vm``); a VM's own copy of
    the UEFI variable store goes to ``workdir``, named after the VM."""
    if firmware == "bios":
        sercon = workdir / "sercon-port"
        sercon.write_bytes(SERCON_PORT)
        return ["-machine", "pc", "-fw_cfg", f"name=etc/sercon-port,file={sercon}"]
    if firmware == "uefi":
        variables = workdir / f"{name}.OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, variables)
        return ["-machine", "q35",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={variables}"]
    if firmware == "uefi-secureboot":
        variables = workdir / f"{name}.OVMF_VARS.ms.fd"
        shutil.copyfile(OVMF_VARS_MS, variables)
        return ["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE_SECURE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={variables}"]
    raise ValueError(f"unknown firmware {firmware!r}")


# -- router advertisements ------------------------------------------------------------------------


def router_advertisement(mac: bytes) -> bytes:
    """ICMPv6 RA: router lifetime 0 (not a default router), no prefix, no M/O flags, so an
    iPXE that hears it stops waiting and goes on with IPv4 alone. The kernel fills the checksum."""
    header = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 0, 0, 0)
    return header + struct.pack("!BB", 1, 1) + mac  # option 1: the source link-layer address


def send_router_advertisements(interface: str, interval: float = 1.0) -> None:
    """Every ``interval`` seconds to all nodes on ``interface``, until killed."""
    index = socket.if_nametoindex(interface)
    mac = bytes.fromhex(Path(f"/sys/class/net/{interface}/address").read_text().strip().replace(":", ""))
    packet = router_advertisement(mac)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)  # RFC 4861: receivers check 255
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    while True:
        try:
            sock.sendto(packet, ("ff02::1", 0, 0, index))
        except OSError as exc:  # e.g. no link-local address yet
            print(f"router advertisement not sent: {exc}", flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    if sys.argv[1:2] == ["router-advertisements"] and len(sys.argv) == 3:
        send_router_advertisements(sys.argv[2])
    else:
        sys.exit("usage: python -m tests.support.netlab router-advertisements INTERFACE")
