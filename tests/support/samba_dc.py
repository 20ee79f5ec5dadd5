"""An Active Directory domain for the tests: Samba's AD DC, provisioned by the tests themselves.

Two network namespaces, named after this process so parallel runs cannot meet: the DC's (``oad<pid>d``,
a bridge holding the DC's address, 198.51.100.x) and a member server's (``oad<pid>m``, on that bridge), for
the proof that an offline-join blob really joins a machine. The host, where the code under test runs (the
worker's net, the API's LDAPS checks), reaches the DC through a veth pair of its own: a /32 address from
198.51.100.0/24 and a /32 route to the DC, nothing else. (Not 192.0.2.0/24: that is the subnet of this
host's real eth0 here, and a second route to it would take the host's own traffic.) Nothing is bridged to
a real interface. Samba runs in the foreground in its own session, is stopped by process group, and the
namespaces are deleted at the end of the session, even when a test fails.

Name resolution is the lab's DNS, the DC's internal DNS server, for what runs in the lab: ``lab-run``
gives a command a mount namespace of its own with the lab's resolv.conf bound over /etc/resolv.conf (the
host's file is untouched), and ``net`` (the program the samba backend is pointed at) is net run that way.
The test process itself resolves the DC's name through ``lab_dns``.

Skipped without root or namespaces; under CI (``CI=true``) it fails instead, as the other labs do.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ldap3 import Connection, Server, Tls
from ldap3.protocol.formatters.formatters import format_sid

from tests.support import namespaces
from tests.support.processes import Managed, stop_group

PREFIX = "oad"  # namespaces oad<pid>d and oad<pid>m, the host's end of the veth oad<pid>h
REALM, DOMAIN, WORKGROUP = "OCTOLAB.TEST", "octolab.test", "OCTOLAB"
DC_HOST = "dc1"
BASE_DN = "DC=octolab,DC=test"
OU = f"OU=Servers,{BASE_DN}"
SERVICE_USER = "svc-join"
COMPUTER_CLASS = "bf967a86-0de6-11d0-a285-00aa003049e2"  # schemaIDGUID of computer
SCHEMA = Path("/usr/share/samba/setup/ad-schema")  # Debian's samba-ad-provision
# the services a one-DC test domain needs: SMB (SAMR for net), RPC, LDAP, CLDAP, Kerberos, DNS, winbind
SERVICES = "-nbt -wrepl -ntp_signd -kcc -drepl -dnsupdate"
PORTS = {53, 88, 445, 636}


def addresses(pid: int) -> tuple[str, str, str]:
    """(host, DC, member) in 198.51.100.0/24, four to a process, so two test runs at once do not meet."""
    base = 4 * (pid % 60)
    return f"198.51.100.{base + 1}", f"198.51.100.{base + 2}", f"198.51.100.{base + 3}"


def complex_password() -> str:
    """One that AD's complexity rules accept: upper, lower, digit and another character."""
    return f"Octo-{secrets.token_hex(8)}-Lab9"


def unusable_reason() -> str | None:
    if os.geteuid() != 0:
        return "a Samba AD DC in network namespaces needs root"
    for program in ("ip", "samba", "samba-tool", "net", "unshare", "mount", "ss"):
        if shutil.which(program) is None:
            return f"{program} is not installed (make system-packages: samba-ad-dc, smbclient)"
    for folder in (Path("/run/samba"), Path("/var/log/samba")):
        if not folder.is_dir():
            return f"{folder} is missing (Debian's samba packages make it): the DC gets a private one mounted there"
    if not SCHEMA.is_dir():
        return f"{SCHEMA} is missing: samba-tool domain provision needs Debian's samba-ad-provision"
    return namespaces.unusable(PREFIX)


def remove_stale_namespaces() -> None:
    """Namespaces of earlier runs whose pytest was killed before it could clean up (their PID is gone)."""
    namespaces.remove_stale(PREFIX, "d|m|probe")


@dataclass(frozen=True)
class Account:
    username: str  # user@domain
    password: str


class Member:
    """A Samba member server's configuration in the member namespace: it consumes a blob as a machine
    would (``net offlinejoin requestodj``) and asks the DC whether its join is good (``net ads testjoin``)."""

    def __init__(self, dc: SambaDc, name: str):
        self.dc, self.name = dc, name
        self.folder = dc.workdir / f"member-{name}"
        shutil.rmtree(self.folder, ignore_errors=True)
        state = self.folder / "state"
        state.mkdir(parents=True)
        self.conf = self.folder / "smb.conf"
        self.conf.write_text("\n".join([
            "[global]", f"netbios name = {name}", f"workgroup = {WORKGROUP}", f"realm = {REALM}", "security = ads",
            f"interfaces = {dc.member_address}", "bind interfaces only = yes",
            *(f"{key} = {state}" for key in ("private dir", "state directory", "cache directory", "lock directory",
                                             "ncalrpc dir")),
            f"log file = {self.folder}/log.%m", "",
        ]))

    def net(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.dc.member_ns, str(self.dc.lab_run), "net", *args,
                               f"--configfile={self.conf}"], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def request_odj(self, blob: str) -> subprocess.CompletedProcess:
        path = self.folder / "odj.txt"
        path.write_text(blob)
        return self.net("offlinejoin", "requestodj", f"loadfile={path}")

    def testjoin(self) -> subprocess.CompletedProcess:
        return self.net("ads", "testjoin")


class SambaDc(Managed):
    """The DC and its namespaces; a context manager that undoes all of it."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        tag = f"{PREFIX}{os.getpid()}"
        self.dc_ns, self.member_ns, self.host_veth = tag + "d", tag + "m", tag + "h"
        self.host_address, self.address, self.member_address = addresses(os.getpid())
        self.dc_name = f"{DC_HOST}.{DOMAIN}"
        self.target = workdir / "dc"
        self.admin = Account(f"Administrator@{DOMAIN}", complex_password())
        self.service = Account(f"{SERVICE_USER}@{DOMAIN}", complex_password())
        self.lab_run = workdir / "lab-run"
        self.dc_run = workdir / "dc-run"
        self.net_program = workdir / "net"
        self.process: subprocess.Popen | None = None
        self.provision_s = self.start_s = self.stop_s = 0.0
        self._namespaces: list[str] = []

    @property
    def ca_file(self) -> Path:
        """The CA Samba made for its LDAPS certificate on first start."""
        return self.target / "private" / "tls" / "ca.pem"

    @property
    def conf(self) -> Path:
        return self.target / "etc" / "smb.conf"

    # -- set-up ------------------------------------------------------------------------------------

    def _create(self) -> None:
        remove_stale_namespaces()
        self._network()
        self._name_service()
        started = time.monotonic()
        self._provision()
        self.provision_s = time.monotonic() - started
        started = time.monotonic()
        self._start()
        self.start_s = time.monotonic() - started
        self._delegate()

    def _network(self) -> None:
        for namespace in (self.dc_ns, self.member_ns):
            namespaces.ip("netns", "add", namespace)
            self._namespaces.append(namespace)
            namespaces.ip("-n", namespace, "link", "set", "lo", "up")
        dc = ("-n", self.dc_ns)
        namespaces.ip(*dc, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        namespaces.ip(*dc, "addr", "add", f"{self.address}/24", "dev", "br0")
        namespaces.ip(*dc, "link", "set", "br0", "up")
        namespaces.ip(*dc, "link", "add", "vmember", "type", "veth", "peer", "name", "eth0", "netns", self.member_ns)
        namespaces.ip(*dc, "link", "set", "vmember", "master", "br0", "up")
        namespaces.ip("-n", self.member_ns, "addr", "add", f"{self.member_address}/24", "dev", "eth0")
        namespaces.ip("-n", self.member_ns, "link", "set", "eth0", "up")
        # the host's way in: a veth whose far end is on the bridge; on the host a /32 address and a /32 route to
        # the DC, nothing else
        namespaces.ip("link", "add", self.host_veth, "type", "veth", "peer", "name", "vhost", "netns", self.dc_ns)
        namespaces.ip(*dc, "link", "set", "vhost", "master", "br0", "up")
        namespaces.ip("addr", "add", f"{self.host_address}/32", "dev", self.host_veth)
        namespaces.ip("link", "set", self.host_veth, "up")
        namespaces.ip("route", "add", f"{self.address}/32", "dev", self.host_veth, "src", self.host_address)

    def _name_service(self) -> None:
        resolv = self.workdir / "resolv.conf"
        resolv.write_text(f"nameserver {self.address}\nsearch {DOMAIN}\n")
        self.lab_run.write_text(
            "#!/bin/sh\n"
            "# the command with the lab's DNS (the DC's): its own mount namespace, the lab's resolv.conf bound\n"
            "# over /etc/resolv.conf there; the host's stays as it is\n"
            f"exec unshare --mount --propagation private sh -c 'mount --bind \"$0\" /etc/resolv.conf && "
            f"exec \"$@\"' {shlex.quote(str(resolv))} \"$@\"\n")
        self.net_program.write_text("#!/bin/sh\n# Samba's net, resolving names as the lab does\n"
                                    f"exec {shlex.quote(str(self.lab_run))} net \"$@\"\n")
        private = self.workdir / "dc-private"
        for folder in ("run", "log"):
            (private / folder).mkdir(parents=True, exist_ok=True)
        self.dc_run.write_text(
            "#!/bin/sh\n"
            "# the DC's programs with /run/samba and /var/log/samba of their own: its winbindd socket, PID files and\n"
            "# early log lines stay out of the host's (smbd finds winbindd only at the built-in /run/samba/winbindd,\n"
            "# where another Samba's smbd on this host would find it too)\n"
            f"exec unshare --mount --propagation private sh -c 'mount --bind \"$0/run\" /run/samba && "
            f"mount --bind \"$0/log\" /var/log/samba && exec \"$@\"' {shlex.quote(str(private))} \"$@\"\n")
        for script in (self.lab_run, self.net_program, self.dc_run):
            script.chmod(0o755)

    def _run(self, namespace: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[:3]} failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
        return done

    def _provision(self) -> None:
        """``samba-tool domain provision`` into a private target folder. The host's smb.conf is not read (an
        empty one is given); what provisioning still copies from the host (the DNS forwarder from
        /etc/resolv.conf) is taken out afterwards, so the lab's DNS never asks the host's."""
        empty = self.workdir / "empty.conf"
        empty.write_text("")
        options = {"interfaces": self.address, "bind interfaces only": "yes", "server services": SERVICES,
                   "prefork children": "2", "log file": f"{self.target}/log.%m", "logging": "file",
                   "max log size": "0"}
        self._run(self.dc_ns, str(self.dc_run), "samba-tool", "domain", "provision", f"--configfile={empty}",
                  f"--targetdir={self.target}", f"--realm={REALM}", f"--domain={WORKGROUP}", "--server-role=dc",
                  "--dns-backend=SAMBA_INTERNAL", f"--host-name={DC_HOST}", f"--host-ip={self.address}",
                  f"--adminpass={self.admin.password}", "--quiet",
                  *(f"--option={key}={value}" for key, value in options.items()))
        lines = self.conf.read_text().splitlines()
        self.conf.write_text("\n".join(line for line in lines if not line.strip().startswith("dns forwarder")) + "\n")

    def _start(self) -> None:
        log = open(self.workdir / "samba.log", "ab")  # noqa: SIM115 - the child keeps it; closed below
        try:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.dc_ns, str(self.dc_run), "samba", "--interactive", "--model=prefork",
                 f"--configfile={self.conf}"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + 60
        while True:
            listing = self._run(self.dc_ns, "ss", "-tlnH").stdout
            listening = {int(port) for port in re.findall(r":(\d+)\s", listing)}
            if listening.issuperset(PORTS) and self.ca_file.exists():
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"samba did not come up: {self.log()[-3000:]}")
            time.sleep(0.1)
        while True:  # the listening socket is there a moment before the LDAP server answers binds
            try:
                self.ldap().unbind()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _delegate(self) -> None:
        """The OU tasks join to, and the service account that may create and delete computer accounts there
        (and nothing else): create/delete computer objects on the OU, full control of the computer objects
        below it. The right an operator delegates to a join account, not an administrator."""
        ldap = self.ldap()
        try:
            ldap.add(OU, ["top", "organizationalUnit"])
            user_dn = f"CN={SERVICE_USER},CN=Users,{BASE_DN}"
            ldap.add(user_dn, ["top", "person", "organizationalPerson", "user"], {
                "sAMAccountName": SERVICE_USER, "userPrincipalName": self.service.username,
                "userAccountControl": 512, "unicodePwd": f'"{self.service.password}"'.encode("utf-16-le")})
            ldap.search(user_dn, "(objectClass=*)", search_scope="BASE", attributes=["objectSid"])
            sid = format_sid(ldap.response[0]["raw_attributes"]["objectSid"][0])
        finally:
            ldap.unbind()
        sddl = f"(A;;CCDC;{COMPUTER_CLASS};;{sid})(A;CIIO;GA;;{COMPUTER_CLASS};{sid})"
        self._run(self.dc_ns, str(self.dc_run), "samba-tool", "dsacl", "set", f"--configfile={self.conf}",
                  f"--URL={self.target}/private/sam.ldb", f"--objectdn={OU}", f"--sddl={sddl}")

    # -- use ---------------------------------------------------------------------------------------

    def ldap(self) -> Connection:
        """A connection as the domain's Administrator, for setting the scene and looking at it afterwards."""
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file), valid_names=[self.dc_name])
        server = Server(self.address, port=636, use_ssl=True, tls=tls, connect_timeout=5)
        return Connection(server, user=self.admin.username, password=self.admin.password, auto_bind=True,
                          raise_exceptions=True, auto_referrals=False)

    def add_user(self, name: str, password: str, *, disabled: bool = False) -> str:
        """A user account in CN=Users (enabled, or disabled: userAccountControl 514); its DN."""
        dn = f"CN={name},CN=Users,{BASE_DN}"
        ldap = self.ldap()
        try:
            ldap.add(dn, ["top", "person", "organizationalPerson", "user"], {
                "sAMAccountName": name, "userPrincipalName": f"{name}@{DOMAIN}",
                "userAccountControl": 514 if disabled else 512, "unicodePwd": f'"{password}"'.encode("utf-16-le")})
        finally:
            ldap.unbind()
        return dn

    def add_group(self, name: str, members: list[str]) -> str:
        """A global security group in CN=Users with these member DNs (users or groups); its DN."""
        dn = f"CN={name},CN=Users,{BASE_DN}"
        ldap = self.ldap()
        try:
            ldap.add(dn, ["top", "group"], {"sAMAccountName": name, **({"member": members} if members else {})})
        finally:
            ldap.unbind()
        return dn

    def member(self, name: str) -> Member:
        return Member(self, name)

    def names(self) -> dict[str, str]:
        """What the lab's DNS answers for the names the code under test connects to."""
        return {self.dc_name: self.address, DOMAIN: self.address}

    def log(self) -> str:
        path = self.workdir / "samba.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        if self.process is not None:
            started = time.monotonic()
            stop_group(self.process, grace=10)
            self.process = None
            self.stop_s = time.monotonic() - started
        for namespace in reversed(self._namespaces):
            namespaces.delete(namespace)  # the host's end of the veth goes with its peer
        self._namespaces.clear()
        subprocess.run(["ip", "link", "del", self.host_veth], capture_output=True)


def _unusable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Samba AD DC unusable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory):
    """One Samba AD DC per test session (provisioning takes seconds), with its member namespace."""
    reason = unusable_reason()
    if reason:
        _unusable(reason)
    with SambaDc(tmp_path_factory.mktemp("samba-dc")) as dc:
        yield dc


@pytest.fixture
def lab_dns(samba_dc, monkeypatch):
    """This process resolves the lab's names as a worker whose DNS is the domain's would: the DC's name and
    the domain's to the DC's address (what the DC's DNS answers); any other name as before."""
    real = socket.getaddrinfo
    names = {name.lower(): address for name, address in samba_dc.names().items()}

    def getaddrinfo(host, port, *args, **kwargs):
        address = names.get(str(host).lower().rstrip(".")) if isinstance(host, str) else None
        return real(address if address else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return samba_dc
