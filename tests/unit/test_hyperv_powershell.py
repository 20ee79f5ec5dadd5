"""The PowerShell runner through the real pypsrp code path against the fake host of
tests/support/fake_pypsrp.py: values arrive as typed parameters, never as code; the error stream, a
refused login and a dropped connection become the errors the pipeline acts on."""

from __future__ import annotations

import pytest
import requests

from octoprov.errors import Cancelled, PermanentError, TargetUnreachable
from octoprov.targets.hyperv import commands
from octoprov.winrm.commands import cmdlet, pipeline
from octoprov.winrm.connection import endpoint
from octoprov.winrm.powershell import CommandFailed, host_session
from tests.support.fake_pypsrp import FakeHost, connect_to

WHERE = endpoint("hv01.yourdom.test", None, "YOURDOM\\svc-hyperv", "Hv-Pa55!", "HV01")

# what an attacker (or an unlucky name) would try if values were pasted into script text
NASTY = ["O'Brien", 'say "hi"', "a; Remove-Item C:\\ -Recurse", "$(Stop-Computer)", "`$env:USERNAME`",
         "x'); Remove-VM * -Force; ('", "D:\\VMs\\it's; $(calc) `n \"q\""]


@pytest.fixture
def host():
    return FakeHost()


def test_hostnames_paths_and_switch_names_arrive_as_literal_parameter_values(host):
    connect = connect_to(host)
    with host_session(WHERE, connect) as session:
        for value in NASTY:
            session.run(pipeline(cmdlet("New-VM", Name=value, Generation=2, MemoryStartupBytes=4 * commands.GIB,
                                        Path=value, NoVHD=True, ErrorAction="Stop"),
                                 cmdlet("Set-VM", Notes="octoprov-task:1")))
            session.run(cmdlet("Connect-VMNetworkAdapter", VMName=value, SwitchName="vSwitch-Prod"))
            host.switches.append({"Name": value, "SwitchType": "External", "NetAdapter": None})
            session.run(cmdlet("Connect-VMNetworkAdapter", VMName=value, SwitchName=value))
            assert session.json(commands.read_vm(value))[0]["Name"] == value
    created = [call for call in host.calls if call.name == "New-VM"]
    assert [call.parameters["Name"] for call in created] == NASTY
    assert [call.parameters["Path"] for call in created] == NASTY
    assert [call.types["Name"] for call in created] == ["S"] * len(NASTY)  # a string parameter, not script
    switched = [call.parameters["SwitchName"] for call in host.calls if call.name == "Connect-VMNetworkAdapter"]
    assert switched[1::2] == NASTY
    assert all(call.script is None for call in host.calls if call.name != "Read-OctoprovVM")
    reads = [call for call in host.calls if call.name == "Read-OctoprovVM"]
    assert {call.script for call in reads} == {commands.SCRIPTS["Read-OctoprovVM"]}  # the fixed text, unchanged
    assert [call.parameters["Name"] for call in reads] == NASTY


def test_values_keep_their_types(host):
    with host_session(WHERE, connect_to(host)) as session:
        session.run(pipeline(cmdlet("New-VM", Name="A", Generation=2, MemoryStartupBytes=64 * commands.GIB,
                                    NoVHD=True), cmdlet("Set-VM", Notes="n")))
        session.run(cmdlet("New-VHD", Path="D:\\a.vhdx", SizeBytes=2 * 1024**4, Fixed=True))
        session.run(cmdlet("Set-VMBios", VMName="A", StartupOrder=["CD", "IDE"]))
        session.run(commands.upload("D:\\x.iso", b"\x00\x01")[0])
    new_vm, _set_vm, new_vhd, bios, chunk = host.calls
    # pypsrp would send a Python int as Int32; sizes in bytes must go as Int64 to reach the host intact
    assert new_vm.types == {"Name": "S", "Generation": "I32", "MemoryStartupBytes": "I64", "NoVHD": "B"}
    assert new_vhd.parameters["SizeBytes"] == 2 * 1024**4 and new_vhd.types["SizeBytes"] == "I64"
    assert bios.parameters["StartupOrder"] == ["CD", "IDE"]
    assert chunk.parameters["Data"] == b"\x00\x01" and chunk.types["Data"] == "BA"


def test_a_cmdlet_error_fails_with_the_hosts_message(host):
    host.errors["New-VM"] = "Failed to create a new virtual machine: a virtual machine named 'SQL-01' already exists"
    with host_session(WHERE, connect_to(host)) as session, pytest.raises(CommandFailed) as failed:
        session.run(pipeline(cmdlet("New-VM", Name="SQL-01", Generation=2, MemoryStartupBytes=1, NoVHD=True,
                                    ErrorAction="Stop"), cmdlet("Set-VM", Notes="octoprov-task:1")))
    assert isinstance(failed.value, PermanentError)
    assert failed.value.message == ("New-VM on HV01: Failed to create a new virtual machine: a virtual machine named "
                                    "'SQL-01' already exists")
    assert "SQL-01" not in host.vms


def test_a_non_terminating_error_fails_too(host):
    with host_session(WHERE, connect_to(host)) as session, pytest.raises(CommandFailed, match="does not exist"):
        session.run(cmdlet("Remove-Item", LiteralPath="D:\\gone.vhdx", Force=True))


@pytest.mark.filterwarnings("ignore::pypsrp.negotiate.NoCertificateRetrievedWarning")
@pytest.mark.parametrize(("transport", "words"), [
    ("ntlm", "refused the login of YOURDOM\\svc-hyperv (ntlm): check the node's username and password"),
    ("credssp", "refused the login of YOURDOM\\svc-hyperv (credssp): check the node's username and password"),
    ("kerberos", "kerberos"),  # without gssapi on the worker: "kerberos is not usable on this worker"
])
def test_a_refused_login_fails_for_good_without_the_password(host, transport, words):
    host.refuse_login = True
    where = endpoint("hv01.yourdom.test", {"transport": transport}, "YOURDOM\\svc-hyperv", "Hv-Pa55!", "HV01")
    with pytest.raises(PermanentError) as refused, host_session(where, connect_to(host)):
        pass
    assert not isinstance(refused.value, TargetUnreachable)
    assert words in refused.value.message
    assert "Hv-Pa55!" not in refused.value.message
    assert host.calls == []


def test_a_connection_dropped_mid_pipeline_is_transient(host):
    host.drop_after = "Set-VMProcessor"
    with host_session(WHERE, connect_to(host)) as session:
        session.run(pipeline(cmdlet("New-VM", Name="A", Generation=2, MemoryStartupBytes=1, NoVHD=True),
                             cmdlet("Set-VM", Notes="n")))
        with pytest.raises(TargetUnreachable, match="Connection reset by peer"):
            session.run(cmdlet("Set-VMProcessor", VMName="A", Count=2))
    assert host.vms["A"]["Cpu"] == 2  # the host ran it; only the answer was lost
    with host_session(WHERE, connect_to(host)) as session:  # the retry gets through
        session.run(cmdlet("Set-VMProcessor", VMName="A", Count=2))


def test_an_unreachable_host_is_transient():
    where = endpoint("127.0.0.1", {"port": 9}, "u", "p", "NOWHERE")
    with pytest.raises(TargetUnreachable, match=r"connection to WinRM on NOWHERE \(127.0.0.1:9\) failed"), \
            host_session(where):
        pass


@pytest.mark.parametrize(("raised", "error", "words"), [
    (requests.exceptions.SSLError("certificate verify failed"), PermanentError, "not trusted"),
    (requests.exceptions.ReadTimeout("read timed out"), TargetUnreachable, "read timed out"),
], ids=["untrusted-certificate", "timeout"])
def test_transport_errors(host, raised, error, words):
    def broken(where):
        wsman = connect_to(host)(where)

        def send(*_args, **_kwargs):
            raise raised

        wsman.transport.session.get_adapter("https://").send = send
        return wsman

    with pytest.raises(error, match=words) as caught, host_session(WHERE, broken):
        pass
    assert type(caught.value) is error or issubclass(type(caught.value), error)


def test_a_cancelled_task_stops_between_commands(host):
    runs = []

    def check():
        if len(runs) == 2:
            raise Cancelled("task 1 is cancelled")
        runs.append(1)

    with host_session(WHERE, connect_to(host), check) as session, pytest.raises(Cancelled):
        for _ in range(5):
            session.run(commands.read_switches())
    assert host.names() == ["Read-OctoprovSwitches"] * 2


def test_the_runspace_pool_is_closed_whatever_happens(host):
    connect = connect_to(host)
    with pytest.raises(CommandFailed), host_session(WHERE, connect) as session:
        session.run(cmdlet("Remove-Item", LiteralPath="D:\\gone", Force=True))
    adapter = connect.opened[0].transport.session.get_adapter("https://")
    assert adapter.shell_id is None  # the shell was deleted on the host
