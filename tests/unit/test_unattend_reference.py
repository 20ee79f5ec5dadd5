"""Every Autounattend Octoprov renders, held to Microsoft's unattend reference
(``tests/support/unattend_reference.py``): the golden files, every combination of the request's
options, and generated requests. Plus proof that the checker is strict: a file broken in each way
Windows Setup would reject or ignore must fail it."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from octoprov.answerfiles.autounattend import ARCHITECTURES
from octoprov.answerfiles.files import render_files
from octoprov.answerfiles.languages import LANGUAGES
from octoprov.validation.timezones import WINDOWS_TIMEZONES
from tests.support.answer_inputs import GOLDEN, IMAGE, example, inputs_for, make_settings, replace
from tests.support.examples import PRODUCT_KEY
from tests.support.unattend_reference import (
    ARCHITECTURES_NOT_IN_REFERENCE,
    BOOLEANS,
    EXAMPLE_ARCHITECTURES,
    REFERENCE,
    SETTINGS_NOT_IN_REFERENCE,
    NotInReference,
    Reference,
    assert_conforms,
    check_answer_file,
    reference,
)

GOLDEN_FILES = sorted(GOLDEN.rglob("autounattend*.xml"))
SETTINGS = make_settings()
BAREMETAL_MAC = "52:54:00:12:34:56"


# -- requests, rendered the way the product renders them ------------------------------------------


@dataclass(frozen=True)
class Options:
    """One request's choices; ``request`` turns them into a body through the spec's example."""

    target: str = "hyperv"  # hyperv | kvm | baremetal
    uefi: bool = True
    static: bool = False
    gateway: bool = True
    dns: tuple[str, ...] = ("10.1.2.10",)
    prefix: int = 24
    join: str = "none"  # none | offline | online
    account: str = "YOURDOM\\svc-domainjoin"
    ou: bool = True
    domain: str = "yourdom.local"
    product_key: bool = True
    post_install: str = "all"  # none | agent | packages | scripts | all
    language: str = "de-DE"
    timezone: str = "W. Europe Standard Time"
    hostname: str = "SQL-SERVER-01"
    password: str = "Adm1n-Pa55word!unique-7f3c"
    architecture: str = "x64"
    image_languages: tuple[str, ...] = ()  # what a scanned image holds; empty: not scanned


POST_INSTALL = {
    "none": {"installAgent": False},
    "agent": {"installAgent": True},
    "packages": {"installAgent": False, "runPackages": [{"packageId": 8, "parameters": {"instanceName": "DB1"}}]},
    "scripts": {"installAgent": False, "runScripts": [{"name": "Configure-Firewall.ps1"}]},
    "all": example()["postInstall"],
}


def request(o: Options) -> dict[str, Any]:
    body = example("dhcp")
    mask = (0xFFFFFFFF << (32 - o.prefix)) & 0xFFFFFFFF
    network = {"mode": "dhcp"} if not o.static else {
        "mode": "static", "ip": "10.1.2.50", "subnet": ".".join(str(mask >> s & 255) for s in (24, 16, 8, 0)),
        **({"gateway": "10.1.2.1"} if o.gateway else {}), "dns": list(o.dns)}
    dcs = ",".join(f"DC={label}" for label in o.domain.split("."))
    domain = {"join": False} if o.join == "none" else {
        "join": True, "name": o.domain, "method": o.join, **({"ou": f"OU=Servers,{dcs}"} if o.ou else {}),
        "serviceAccount": {"username": o.account, "password": "J0in-Pa55word!"}}
    os_section = {"imageId": 1, "language": o.language, "timezone": o.timezone, "adminPassword": o.password,
                  **({"productKey": PRODUCT_KEY} if o.product_key else {})}
    body.update(hostname=o.hostname, targetType=o.target, network=network, domain=domain, os=os_section,
                postInstall=POST_INSTALL[o.post_install])
    if o.target == "baremetal":
        del body["vm"], body["hypervisorNodeId"]
        body["macAddress"] = BAREMETAL_MAC
    elif o.target == "kvm":
        body["vm"] = {"generation": 2 if o.uefi else 1, "disks": [{"sizeGb": 60, "purpose": "os"}]}
    else:
        body["vm"] = {**body["vm"], "generation": 2 if o.uefi else 1, "secureboot": o.uefi}
    return body


def render(o: Options) -> str:
    """The answer file as the machine would fetch it: ``files.render_files``, the per-task file URL's code."""
    editions = ({"index": 2, "languages": list(o.image_languages), "architecture": o.architecture},)
    image = replace(IMAGE, architecture=o.architecture, editions=editions if o.image_languages else ())
    inputs = inputs_for(request(o), image=image, mac=BAREMETAL_MAC if o.target == "baremetal" else "00:15:5d:01:02:03",
                        hardware={"platform": "efi" if o.uefi else "pcbios"} if o.target == "baremetal" else {})
    assert inputs.firmware == ("uefi" if o.uefi else "bios")
    rendered = render_files(inputs, SETTINGS)
    assert not rendered.problems, rendered.problems
    return rendered.files["autounattend.xml"]


def assert_shape(xml: str, o: Options) -> None:
    """The file holds what the options asked for, so a combination is not checked vacuously."""
    assert ("<Type>EFI</Type>" in xml) == o.uefi
    assert ("Microsoft-Windows-TCPIP" in xml) == o.static
    assert ("<AccountData>" in xml, "<Credentials>" in xml) == (o.join == "offline", o.join == "online")
    assert ("<ProductKey>" in xml) == o.product_key
    assert ("msiexec.exe" in xml) == (o.post_install in ("agent", "all"))
    assert ("Enable-PSRemoting" in xml) == (o.post_install in ("packages", "scripts", "all"))


# -- the golden files and every combination -------------------------------------------------------


def test_the_reference_is_the_snapshot_its_readme_describes() -> None:
    about = json.loads(REFERENCE.read_text(encoding="utf-8"))["_about"]
    assert about["source"]["commit"].startswith("2564998a") and about["counts"]["settings"] == 1121
    loaded = reference()
    assert len(loaded.settings) == 1121 + len(SETTINGS_NOT_IN_REFERENCE) and len(loaded.components) == 82


def test_there_are_golden_answer_files_to_check() -> None:
    assert len(GOLDEN_FILES) >= 5, GOLDEN_FILES


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda path: path.name)
def test_golden_answer_files_conform(path: Path) -> None:
    assert_conforms(path.read_bytes(), path.name)


# firmware x network x domain join x product key x post-install: all 48 combinations; the target,
# language, time zone and image vary along, so that every language is rendered at least once
COMBINATIONS = list(itertools.product((True, False), (False, True), ("none", "offline", "online"), (True, False),
                                      ("none", "all")))
LANGUAGE_TAGS = sorted(LANGUAGES)
TIMEZONES = sorted(WINDOWS_TIMEZONES)


@pytest.mark.parametrize(("uefi", "static", "join", "product_key", "post_install"), COMBINATIONS)
def test_every_option_combination_conforms(uefi: bool, static: bool, join: str, product_key: bool,
                                           post_install: str) -> None:
    i = COMBINATIONS.index((uefi, static, join, product_key, post_install))
    options = Options(target=("hyperv", "kvm", "baremetal")[i % 3], uefi=uefi, static=static, join=join,
                      product_key=product_key, post_install=post_install,
                      language=LANGUAGE_TAGS[i % len(LANGUAGE_TAGS)], timezone=TIMEZONES[i * 7 % len(TIMEZONES)],
                      architecture=("x64", "arm64", "x86")[i % 3],
                      image_languages=((), ("en-US",))[i % 2])
    xml = render(options)
    assert_shape(xml, options)
    assert_conforms(xml, f"combination {options}")


def test_the_combinations_cover_every_language() -> None:
    assert len(COMBINATIONS) >= len(LANGUAGE_TAGS)


# -- generated requests ---------------------------------------------------------------------------

LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
# ends in a digit: never one of NetBIOS's reserved words, which request validation may refuse
HOSTNAME = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}[0-9]", fullmatch=True)
# visible characters, ASCII and Latin: what request validation accepts however it is hardened
PASSWORD = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x24F, categories=("L", "N", "P", "S")),
                   min_size=1, max_size=40).map(lambda tail: "Aa1!" + tail)


@st.composite
def options(draw: st.DrawFn) -> Options:
    join = draw(st.sampled_from(("none", "offline", "online")))
    domain = draw(st.lists(LABEL, min_size=1, max_size=3).map(lambda labels: ".".join([*labels, "local"])))
    user = draw(LABEL)
    return Options(
        target=draw(st.sampled_from(("hyperv", "kvm", "baremetal"))), uefi=draw(st.booleans()),
        static=draw(st.booleans()), gateway=draw(st.booleans()), prefix=draw(st.sampled_from((8, 16, 24))),
        dns=tuple(draw(st.lists(st.sampled_from(("10.1.2.10", "10.1.2.11", "192.0.2.53", "198.51.100.53")),
                                max_size=4, unique=True))),
        join=join, domain=domain, ou=draw(st.booleans()),
        account=draw(st.sampled_from((f"YOURDOM\\{user}", f"{user}@{domain}", user))),
        product_key=draw(st.booleans()), post_install=draw(st.sampled_from(tuple(POST_INSTALL))),
        language=draw(st.sampled_from(LANGUAGE_TAGS)), timezone=draw(st.sampled_from(TIMEZONES)),
        hostname=draw(HOSTNAME), password=draw(PASSWORD),
        architecture=draw(st.sampled_from(("x64", "arm64", "x86"))),
        image_languages=draw(st.sampled_from(((), ("en-US",), ("fr-FR", "en-US")))),
    )


@hypothesis_settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options())
def test_generated_requests_conform(o: Options) -> None:
    xml = render(o)
    assert_shape(xml, o)
    assert_conforms(xml, f"the answer file of {o}")


# -- the checker is strict ------------------------------------------------------------------------

STATIC_JOIN = (GOLDEN / "windows" / "autounattend-static-offline-join.xml").read_text(encoding="utf-8")
ONLINE = (GOLDEN / "windows" / "autounattend-online-join.xml").read_text(encoding="utf-8")
SHELL, SETUP, TCPIP = "Microsoft-Windows-Shell-Setup", "Microsoft-Windows-Setup", "Microsoft-Windows-TCPIP"
DNS_SERVER = "Microsoft-Windows-DNS-Client/Interfaces/Interface/DNSServerSearchOrder/IpAddress"
ADDRESS = f"{TCPIP}/Interfaces/Interface/UnicastIpAddresses/IpAddress"
CREATE = f"{SETUP}/DiskConfiguration/Disk/CreatePartitions/CreatePartition"


def edit(old: str, new: str, text: str = STATIC_JOIN, count: int = 1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


BROKEN = {
    # a setting moved into the same component of another pass, where the reference does not list it
    "setting in the wrong pass": (edit("<ComputerName>SQL-SERVER-01</ComputerName>\n", "").replace(
        "<AutoLogon>", "<ComputerName>SQL-SERVER-01</ComputerName>\n      <AutoLogon>"),
        f"{SHELL}/ComputerName", "not valid in the oobeSystem pass (valid: offlineServicing, specialize)"),
    # a whole pass renamed: everything of specialize now stands in auditUser
    "pass renamed": (edit('<settings pass="specialize">', '<settings pass="auditUser">'),
                     f"{TCPIP}/Interfaces", "not valid in the auditUser pass"),
    "unknown pass": (edit('pass="oobeSystem"', 'pass="oobe"'), "settings", "unknown pass 'oobe'"),
    "misspelt element": (edit("ComputerName>", "ComputerNmae>", count=2), f"{SHELL}/ComputerNmae",
                         "no such setting in the reference (did you mean ComputerName?)"),
    "wrong case": (edit("TimeZone>", "Timezone>", count=2), f"{SHELL}/Timezone", "no such setting"),
    "element under the wrong parent": (edit("<WillWipeDisk>", "<Extend>true</Extend>\n          <WillWipeDisk>"),
                                       f"{SETUP}/DiskConfiguration/Disk/Extend", "no such setting"),
    "unknown component": (edit('"Microsoft-Windows-UnattendedJoin"', '"Microsoft-Windows-UnattendJoin"'),
                          "Microsoft-Windows-UnattendJoin", "no such component"),
    "component identity": (edit('publicKeyToken="31bf3856ad364e35"', 'publicKeyToken="31bf3856ad364e36"'),
                           "Microsoft-Windows-International-Core-WinPE", "publicKeyToken must be"),
    "unknown architecture": (edit('processorArchitecture="amd64"', 'processorArchitecture="ia64"'),
                             "Microsoft-Windows-International-Core-WinPE", "processorArchitecture 'ia64'"),
    "missing wcm:action": (edit('<CreatePartition wcm:action="add">', "<CreatePartition>"), CREATE,
                           "a list item without wcm:action"),
    "undocumented wcm:action": (edit('<CreatePartition wcm:action="add">', '<CreatePartition wcm:action="append">'),
                                CREATE, "wcm:action='append'"),
    "missing wcm:keyValue": (edit(' wcm:keyValue="1">198.51.100.50/24', ">198.51.100.50/24"), ADDRESS,
                             "without its wcm:keyValue"),
    "duplicate wcm:keyValue": (edit('wcm:keyValue="2"', 'wcm:keyValue="1"'), DNS_SERVER, "two list items with the key"),
    "missing key element": (edit("<Order>1</Order>\n              <Size>512</Size>", "<Size>512</Size>"), CREATE,
                            "without its key element Order"),
    "duplicate key element": (edit("<Order>2</Order>\n              <Size>128</Size>",
                                   "<Order>1</Order>\n              <Size>128</Size>"), CREATE,
                              "two list items with the key '1'"),
    "key written as an element": (edit(' wcm:keyValue="1">198.51.100.50/24</IpAddress>',
                                       ' wcm:keyValue="1"><Key>1</Key>198.51.100.50/24</IpAddress>'),
                                  f"{ADDRESS}/Key", "written as the wcm:keyValue attribute"),
    "wcm:action on a setting that is not a list item": (edit("<OOBE>", '<OOBE wcm:action="add">'),
                                                        f"{SHELL}/OOBE", "not list as a list item"),
    "a setting twice": (edit("<HideEULAPage>true</HideEULAPage>", "<HideEULAPage>true</HideEULAPage>"
                             "<HideEULAPage>false</HideEULAPage>"), f"{SHELL}/OOBE/HideEULAPage",
                        "appears 2 times but is not a list item"),
    "value outside the set": (edit("<Format>NTFS</Format>", "<Format>ReFS</Format>"),
                              f"{SETUP}/DiskConfiguration/Disk/ModifyPartitions/ModifyPartition/Format",
                              "'ReFS' is not a documented value"),
    "enumeration in the wrong case": (edit("<Type>Primary</Type>", "<Type>primary</Type>"), f"{CREATE}/Type",
                                      "'primary' is not a documented value"),
    "number outside the set": (edit("<ProtectYourPC>3", "<ProtectYourPC>4"), f"{SHELL}/OOBE/ProtectYourPC",
                               "'4' is not a documented value ['1', '2', '3']"),
    "boolean in another casing": (edit("<WillWipeDisk>true", "<WillWipeDisk>True"),
                                  f"{SETUP}/DiskConfiguration/Disk/WillWipeDisk", "booleans are written in lowercase"),
    "not an integer": (edit("<LogonCount>1", "<LogonCount>once"), f"{SHELL}/AutoLogon/LogonCount", "not an integer"),
    "longer than documented": (edit("SQL-SERVER-01<", "SQL-SERVER-01-ABC<"), f"{SHELL}/ComputerName",
                               "17 characters, the reference allows 15"),
    "empty value": (edit("<Label>Windows</Label>", "<Label></Label>"),
                    f"{SETUP}/DiskConfiguration/Disk/ModifyPartitions/ModifyPartition/Label", "empty"),
    "text in a container": (edit("<Identification>", "<Identification>example.com", ONLINE),
                            "Microsoft-Windows-UnattendedJoin/Identification", "a container setting holds text"),
    "not XML at all": (edit("</unattend>", "</unattend"), "", "not well-formed XML"),
    "wcm prefix undeclared": (edit(' xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State"', ""), "",
                              "not well-formed XML: unbound prefix"),
    "unknown attribute": (edit("<ComputerName>", '<ComputerName wcm:keyValue="1" xsi:nil="false">'),
                          f"{SHELL}/ComputerName", "unknown attribute"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_the_checker_rejects_a_broken_file(case: str) -> None:
    xml, path, problem = BROKEN[case]
    findings = check_answer_file(xml)
    assert any(f.path == path and problem in f.problem for f in findings), "\n".join(map(str, findings)) or "none"
    with pytest.raises(AssertionError, match="departs from Microsoft's unattend reference"):
        assert_conforms(xml)


def test_a_wrong_pass_is_reported_once_at_the_topmost_element() -> None:
    xml, _, _ = BROKEN["pass renamed"]
    paths = [f.path for f in check_answer_file(xml) if "pass" in f.problem]
    assert f"{TCPIP}/Interfaces" in paths and f"{TCPIP}/Interfaces/Interface" not in paths


def document(pass_name: str, component: str, inner: str) -> str:
    return (f'<unattend xmlns="urn:schemas-microsoft-com:unattend" '
            f'xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State"><settings pass="{pass_name}">'
            f'<component name="{component}" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" '
            f'language="neutral" versionScope="nonSxS">{inner}</component></settings></unattend>')


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("1", True), ("100", True), ("101", False), ("-1", False),
                                           ("loud", False)])
def test_documented_ranges_and_values_together(value: str, ok: bool) -> None:
    # CameraSoundLevel: the value table gives 0 and the range 1-100
    xml = document("specialize", "Microsoft-Windows-CoreMmRes", f"<CameraSoundLevel>{value}</CameraSoundLevel>")
    assert (check_answer_file(xml) == []) == ok


@pytest.mark.parametrize(("value", "ok"), [("true", True), ("false", True), ("True", False), ("FALSE", False),
                                           ("1", False)])
def test_booleans_the_reference_prints_capitalised_are_still_written_in_lowercase(value: str, ok: bool) -> None:
    # AddAllVolumes' page prints its values as True/False; the setting is the same boolean type
    assert reference().settings["Microsoft-Windows-Embedded-UnifiedWriteFilter/AddAllVolumes"].boolean
    xml = document("specialize", "Microsoft-Windows-Embedded-UnifiedWriteFilter",
                   f"<AddAllVolumes>{value}</AddAllVolumes>")
    assert (check_answer_file(xml) == []) == ok


def test_a_text_list_item_is_held_to_its_documented_value() -> None:
    # SNMP ValidCommunity: keyed by wcm:keyValue, its text is the documented Value (1, 2, 4, 8, 16)
    item = ('<ValidCommunities><ValidCommunity wcm:action="add" wcm:keyValue="public">{}</ValidCommunity>'
            "</ValidCommunities>")
    assert check_answer_file(document("specialize", "Microsoft-Windows-SNMP-Agent-Service", item.format(4))) == []
    findings = check_answer_file(document("specialize", "Microsoft-Windows-SNMP-Agent-Service", item.format(3)))
    assert [f.problem for f in findings] == ["'3' is not a documented value ['1', '16', '2', '4', '8']"]


# -- what we rely on beyond the reference ---------------------------------------------------------


def test_every_architecture_octoprov_writes_is_accepted_and_every_extra_one_has_a_reason() -> None:
    assert set(ARCHITECTURES.values()) <= reference().architectures
    for architecture, reason in ARCHITECTURES_NOT_IN_REFERENCE.items():
        assert architecture not in EXAMPLE_ARCHITECTURES and len(reason) > 40
        assert architecture in ARCHITECTURES.values(), f"{architecture} is allowed but Octoprov never writes it"


def test_settings_beyond_the_reference_are_entries_with_reasons_not_skips() -> None:
    for entry in SETTINGS_NOT_IN_REFERENCE:
        assert entry.passes and len(entry.reason) > 40, entry
    newer = NotInReference(f"{SHELL}/OOBE/HideNewerScreen", ("oobeSystem",), "a made-up setting for this test, "
                           "standing for one added to Windows after the reference's snapshot", BOOLEANS)
    supplemented = Reference.load(supplements=[newer])
    oobe = "<OOBE><HideNewerScreen>{}</HideNewerScreen></OOBE>"
    assert supplemented.check(document("oobeSystem", SHELL, oobe.format("true"))) == []
    assert [f.problem for f in supplemented.check(document("oobeSystem", SHELL, oobe.format("yes")))] == [
        "'yes' is not a documented value ['false', 'true']"]
    assert "not valid in the specialize pass" in str(supplemented.check(document(
        "specialize", SHELL, "<ComputerName>PC-1</ComputerName>" + oobe.format("true"))))
    assert "no such setting" in str(check_answer_file(document("oobeSystem", SHELL, oobe.format("true"))))
    with pytest.raises(ValueError, match="needs no allow-list entry"):
        Reference.load(supplements=[NotInReference(f"{SHELL}/ComputerName", ("specialize",), "already documented")])
