"""The Windows answer file: golden files, the structure Setup requires, secrets where they belong, and
property tests feeding hostile and non-ASCII text through the renderer."""

from __future__ import annotations

import base64
import copy
import json
import re

import pytest
from defusedxml import ElementTree
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from octoprov.answerfiles.autounattend import (
    COMMAND_LINE_MAX,
    Autounattend,
    Command,
    OfflineJoin,
    OnlineJoin,
    StaticNetwork,
    autounattend_for,
    split_account,
)
from octoprov.answerfiles.languages import LANGUAGES, language
from octoprov.answerfiles.render import UnsafeValue
from octoprov.errors import InvalidRequest
from octoprov.validation import WINDOWS_LANGUAGES
from tests.support.answer_inputs import BLOB, IMAGE, TOKEN, check_golden, example, inputs_for, make_settings, replace
from tests.support.examples import ADMIN_PASSWORD, JOIN_PASSWORD, PRODUCT_KEY, spec_example, store_post_install

NS = {"u": "urn:schemas-microsoft-com:unattend"}
WCM = "{http://schemas.microsoft.com/WMIConfig/2002/State}"
ONLINE = {"join": True, "name": "yourdom.local", "ou": "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local",
          "method": "online", "serviceAccount": {"username": "YOURDOM\\svc-domainjoin", "password": JOIN_PASSWORD}}
NO_DOMAIN = {"join": False}


def _os(**changes) -> dict:
    return {**example()["os"], **changes}


VARIANTS = {
    "dhcp-no-domain": example("dhcp", domain=NO_DOMAIN),
    "static-offline-join": example("static"),  # the spec's SQL-SERVER-01 example, static variant
    "online-join": example("dhcp", domain=ONLINE),
    "bios-generation-1": example("dhcp", domain=NO_DOMAIN, vm={**example()["vm"], "generation": 1,
                                                                "secureboot": False}),
    "no-product-key": example("dhcp", domain=NO_DOMAIN, os={k: v for k, v in _os().items() if k != "productKey"}),
}


def render(variant: str, **changes) -> str:
    return autounattend_for(inputs_for(VARIANTS[variant], **changes), make_settings()).render()


def parse(xml: str):
    return ElementTree.fromstring(xml.encode("utf-8"))


def component(root, pass_name: str, name: str):
    found = root.findall(f"u:settings[@pass='{pass_name}']/u:component[@name='{name}']", NS)
    assert len(found) == 1, f"{pass_name}/{name} appears {len(found)} times"
    return found[0]


def text(element, path: str) -> str | None:
    return element.findtext("u:" + path.replace("/", "/u:"), namespaces=NS)


def decoded(value: str) -> str:
    return base64.b64decode(value).decode("utf-16-le")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_golden(variant):
    check_golden(f"windows/autounattend-{variant}.xml", render(variant))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_component_carries_what_setup_requires(variant):
    xml = render(variant)
    assert 'xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State"' in xml
    assert 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"' in xml
    root = parse(xml)
    assert root.tag == "{urn:schemas-microsoft-com:unattend}unattend"
    assert [s.get("pass") for s in root.findall("u:settings", NS)] == ["windowsPE", "specialize", "oobeSystem"]
    components = root.findall("u:settings/u:component", NS)
    assert len(components) >= 5
    for element in components:
        assert element.attrib == {"name": element.get("name"), "processorArchitecture": "amd64",
                                  "publicKeyToken": "31bf3856ad364e35", "language": "neutral",
                                  "versionScope": "nonSxS"}
    actions = [element.get(f"{WCM}action") for element in root.iter() if f"{WCM}action" in element.attrib]
    assert actions and set(actions) == {"add"}  # parsed as the wcm namespace: the prefix is declared


def test_windows_pe_pass_languages_disk_image_eula():
    root = parse(render("dhcp-no-domain"))
    international = component(root, "windowsPE", "Microsoft-Windows-International-Core-WinPE")
    assert text(international, "SetupUILanguage/UILanguage") == "de-DE"
    assert text(international, "InputLocale") == "0407:00000407"
    assert [text(international, name) for name in ("SystemLocale", "UILanguage", "UserLocale")] == ["de-DE"] * 3
    setup = component(root, "windowsPE", "Microsoft-Windows-Setup")
    partitions = [(text(p, "Order"), text(p, "Type"), text(p, "Size"), text(p, "Extend"))
                  for p in setup.findall("u:DiskConfiguration/u:Disk/u:CreatePartitions/u:CreatePartition", NS)]
    assert partitions == [("1", "EFI", "512", None), ("2", "MSR", "128", None), ("3", "Primary", None, "true")]
    modified = [(text(p, "PartitionID"), text(p, "Format"), text(p, "Letter"))
                for p in setup.findall("u:DiskConfiguration/u:Disk/u:ModifyPartitions/u:ModifyPartition", NS)]
    assert modified == [("1", "FAT32", None), ("3", "NTFS", "C")]
    image = setup.find("u:ImageInstall/u:OSImage", NS)
    assert text(image, "InstallFrom/Path") == "\\\\192.0.2.10\\images\\windows\\ws2025\\install.wim"
    assert text(image, "InstallFrom/MetaData/Key") == "/IMAGE/INDEX"
    assert text(image, "InstallFrom/MetaData/Value") == "2"
    assert text(image, "InstallTo/PartitionID") == "3"
    assert text(setup, "UserData/AcceptEula") == "true"
    assert text(setup, "UserData/ProductKey/Key") == PRODUCT_KEY


def test_bios_generation_1_gets_an_active_system_partition_on_mbr():
    xml = render("bios-generation-1")
    setup = component(parse(xml), "windowsPE", "Microsoft-Windows-Setup")
    partitions = [(text(p, "Type"), text(p, "Size"))
                  for p in setup.findall("u:DiskConfiguration/u:Disk/u:CreatePartitions/u:CreatePartition", NS)]
    assert partitions == [("Primary", "500"), ("Primary", None)]
    first, second = setup.findall("u:DiskConfiguration/u:Disk/u:ModifyPartitions/u:ModifyPartition", NS)
    assert (text(first, "Active"), text(first, "Label"), text(second, "Letter")) == ("true", "System Reserved", "C")
    assert text(setup, "ImageInstall/OSImage/InstallTo/PartitionID") == "2"
    assert "EFI" not in xml and "MSR" not in xml


def test_no_product_key_means_no_key_element_anywhere():
    xml = render("no-product-key")
    assert "ProductKey" not in xml and PRODUCT_KEY not in xml
    assert "<AcceptEula>true</AcceptEula>" in xml
    with_key = parse(render("dhcp-no-domain"))
    # the installed system gets the key too: DISM-applied images never run the windowsPE pass
    assert text(component(with_key, "specialize", "Microsoft-Windows-Shell-Setup"), "ProductKey") == PRODUCT_KEY


def test_specialize_name_time_zone_and_static_address_by_mac():
    root = parse(render("static-offline-join"))
    shell = component(root, "specialize", "Microsoft-Windows-Shell-Setup")
    assert text(shell, "ComputerName") == "SQL-SERVER-01" and text(shell, "TimeZone") == "W. Europe Standard Time"
    interface = component(root, "specialize", "Microsoft-Windows-TCPIP").find("u:Interfaces/u:Interface", NS)
    assert text(interface, "Identifier") == "00-15-5D-01-02-03"
    assert text(interface, "Ipv4Settings/DhcpEnabled") == "false"
    assert text(interface, "UnicastIpAddresses/IpAddress") == "198.51.100.50/24"
    assert (text(interface, "Routes/Route/Prefix"), text(interface, "Routes/Route/NextHopAddress")) == (
        "0.0.0.0/0", "198.51.100.1")
    dns = component(root, "specialize", "Microsoft-Windows-DNS-Client")
    assert text(dns, "Interfaces/Interface/Identifier") == "00-15-5D-01-02-03"
    servers = dns.findall("u:Interfaces/u:Interface/u:DNSServerSearchOrder/u:IpAddress", NS)
    assert [(s.get(f"{WCM}keyValue"), s.text) for s in servers] == [("1", "198.51.100.10"), ("2", "198.51.100.11")]
    assert text(dns, "DNSDomain") == "yourdom.local"
    dhcp = render("dhcp-no-domain")
    assert "Microsoft-Windows-TCPIP" not in dhcp and "Microsoft-Windows-DNS-Client" not in dhcp


def test_offline_join_carries_the_blob_and_no_credentials():
    xml = render("static-offline-join")
    join = component(parse(xml), "specialize", "Microsoft-Windows-UnattendedJoin")
    assert text(join, "Identification/Provisioning/AccountData") == BLOB
    for absent in ("Credentials", "JoinDomain", "<Password>" + JOIN_PASSWORD, JOIN_PASSWORD, "svc-domainjoin"):
        assert absent not in xml


def test_online_join_credentials_only_in_specialize():
    xml = render("online-join")
    root = parse(xml)
    join = component(root, "specialize", "Microsoft-Windows-UnattendedJoin")
    identification = join.find("u:Identification", NS)
    assert text(identification, "Credentials/Domain") == "YOURDOM"
    assert text(identification, "Credentials/Username") == "svc-domainjoin"
    assert text(identification, "Credentials/Password") == JOIN_PASSWORD
    assert text(identification, "JoinDomain") == "yourdom.local"
    assert text(identification, "MachineObjectOU") == "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local"
    assert "AccountData" not in xml and xml.count(JOIN_PASSWORD) == 1
    for settings_pass in root.findall("u:settings", NS):
        found = settings_pass.findall(".//u:Credentials", NS)
        assert len(found) == (1 if settings_pass.get("pass") == "specialize" else 0)


@pytest.mark.parametrize(("account", "expected"), [
    ("YOURDOM\\svc-join", ("YOURDOM", "svc-join")), ("svc-join@yourdom.local", ("yourdom.local", "svc-join")),
    ("svc-join", ("yourdom.local", "svc-join")),
])
def test_accounts_are_split_into_domain_and_user(account, expected):
    assert split_account(account, "yourdom.local") == expected


def test_administrator_password_is_encoded_as_windows_expects():
    xml = render("dhcp-no-domain")
    shell = component(parse(xml), "oobeSystem", "Microsoft-Windows-Shell-Setup")
    admin = shell.find("u:UserAccounts/u:AdministratorPassword", NS)
    assert decoded(text(admin, "Value")) == ADMIN_PASSWORD + "AdministratorPassword"
    assert text(admin, "PlainText") == "false"
    autologon = shell.find("u:AutoLogon", NS)
    assert decoded(text(autologon, "Password/Value")) == ADMIN_PASSWORD + "Password"
    assert (text(autologon, "Username"), text(autologon, "LogonCount")) == ("Administrator", "1")
    assert ADMIN_PASSWORD not in xml
    # a known vector: "Passw0rd!" as WSIM writes it
    assert text(admin, "Value") != "" and autounattend_value("Passw0rd!") == (
        "UABhAHMAcwB3ADAAcgBkACEAQQBkAG0AaQBuAGkAcwB0AHIAYQB0AG8AcgBQAGEAcwBzAHcAbwByAGQA")


def autounattend_value(password: str) -> str:
    from octoprov.answerfiles.passwords import unattend_password

    return unattend_password(password, "AdministratorPassword")


def test_oobe_hidden_and_first_logon_installs_agent_enables_remoting_then_reports_with_the_token():
    root = parse(render("static-offline-join"))
    shell = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    oobe = shell.find("u:OOBE", NS)
    for name in ("HideEULAPage", "HideLocalAccountScreen", "HideOEMRegistrationScreen", "HideOnlineAccountScreens",
                 "HideWirelessSetupInOOBE"):
        assert text(oobe, name) == "true"
    commands = shell.findall("u:FirstLogonCommands/u:SynchronousCommand", NS)
    assert [text(c, "Order") for c in commands] == [str(i) for i in range(1, len(commands) + 1)]
    lines = [text(c, "CommandLine") for c in commands]
    assert "http://192.0.2.10:8080/boot/images/agent/octoprov-agent.msi" in lines[0] and "msiexec.exe" in lines[0]
    # the packages and the script of the example run over WinRM: HTTP 5985 is opened before the first boot is
    # reported; nothing loosens WinRM's own settings (unencrypted messages stay refused, no Basic logons)
    assert "Enable-PSRemoting -Force -SkipNetworkProfileCheck;" in lines[1]
    assert "-Direction Inbound -Protocol TCP -LocalPort 5985 -Profile Any -Action Allow" in lines[1]
    assert not re.search(r"AllowUnencrypted|Auth.Basic|TrustedHosts|WSMan:", " ".join(lines))
    assert "event='first_boot'" in lines[2] and f"token='{TOKEN}'" in lines[2] and "taskId=42" in lines[2]
    assert "'http://192.0.2.10:8080/api/v1/provisioning/pxe/status'" in lines[2]
    assert "Get-NetIPAddress -AddressFamily IPv4" in lines[2] and ";addresses=$a}" in lines[2]  # where to log on
    assert "event='domain_joined'" in lines[3] and "PartOfDomain" in lines[3]
    assert "Panther\\unattend.xml" in lines[4] and lines[-1] == "logoff.exe"
    assert all(len(line) <= COMMAND_LINE_MAX for line in lines)
    international = component(root, "oobeSystem", "Microsoft-Windows-International-Core")
    assert text(international, "InputLocale") == "0407:00000407"


def test_no_agent_remoting_or_domain_report_when_not_asked_for():
    body = example("dhcp", domain=NO_DOMAIN, postInstall={"installAgent": False})
    xml = autounattend_for(inputs_for(body), make_settings()).render()
    assert "msiexec" not in xml and "domain_joined" not in xml and "first_boot" in xml
    assert "Enable-PSRemoting" not in xml and "addresses=$a" in xml  # no package or script to run over WinRM
    scripts_only = example("dhcp", domain=NO_DOMAIN, postInstall={"runScripts": [{"name": "Configure-Firewall.ps1"}]})
    assert "Enable-PSRemoting" in autounattend_for(inputs_for(scripts_only), make_settings()).render()


def test_ui_language_falls_back_to_the_images_own_and_names_its_administrator():
    french = example("dhcp", domain=NO_DOMAIN, os=_os(language="fr-FR", timezone="Romance Standard Time"))
    english_image = replace(IMAGE, editions=({"index": 2, "languages": ["en-US"], "architecture": "x64"},))
    root = parse(autounattend_for(inputs_for(french, image=english_image), make_settings()).render())
    international = component(root, "windowsPE", "Microsoft-Windows-International-Core-WinPE")
    assert (text(international, "UILanguage"), text(international, "UserLocale")) == ("en-US", "fr-FR")
    assert text(international, "InputLocale") == "040c:0000040c"
    shell = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    assert text(shell, "AutoLogon/Username") == "Administrator"
    french_image = replace(IMAGE, editions=({"index": 2, "languages": ["fr-FR"], "architecture": "arm64"},))
    xml = autounattend_for(inputs_for(french, image=french_image), make_settings()).render()
    assert "<Username>Administrateur</Username>" in xml and 'processorArchitecture="arm64"' in xml


def test_every_supported_language_has_an_input_profile():
    assert set(LANGUAGES) == WINDOWS_LANGUAGES
    profile = re.compile(r"^[0-9a-f]{4}:([0-9a-f]{8}|\{[0-9A-F-]{36}\}\{[0-9A-F-]{36}\})$")
    for row in LANGUAGES.values():
        assert profile.match(row.input_locale), row
    assert language("DE-de").input_locale == "0407:00000407"
    assert language("sr-Latn-RS").glibc_locale == "sr_RS.UTF-8@latin"


def test_missing_admin_password_and_missing_blob_name_the_field():
    body = example("dhcp", domain=NO_DOMAIN, os={k: v for k, v in _os().items() if k != "adminPassword"})
    with pytest.raises(InvalidRequest) as error:
        autounattend_for(inputs_for(body), make_settings())
    assert "os.adminPassword" in error.value.errors
    with pytest.raises(InvalidRequest) as error:
        autounattend_for(inputs_for(example("static"), blob=None), make_settings())
    assert "domain" in error.value.errors
    with pytest.raises(InvalidRequest) as error:
        autounattend_for(inputs_for(example("static"), mac=None), make_settings())
    assert "network" in error.value.errors


def test_text_xml_cannot_carry_is_refused_naming_the_field():
    body = example("dhcp", domain={**ONLINE, "serviceAccount": {"username": "svc", "password": "bad\x01value"}})
    with pytest.raises(InvalidRequest) as error:
        autounattend_for(inputs_for(body), make_settings())
    assert error.value.errors == {"domain.serviceAccount.password": "contains a control character XML cannot carry"}
    assert "bad\x01value" not in str(error.value)


def test_a_token_or_url_scripts_would_interpret_is_refused():
    hostile = replace(inputs_for(VARIANTS["dhcp-no-domain"]), callback_token="x'; Remove-Item C:\\ -Recurse; '")
    with pytest.raises(UnsafeValue):
        autounattend_for(hostile, make_settings())
    with pytest.raises(UnsafeValue) as error:
        autounattend_for(inputs_for(VARIANTS["dhcp-no-domain"]), make_settings(public_url="http://host/a b&c"))
    assert "OCTOPROV_PUBLIC_URL" in str(error.value)


def test_a_command_over_setups_limit_is_refused():
    with pytest.raises(UnsafeValue):
        minimal(first_logon=(Command("x" * (COMMAND_LINE_MAX + 1), "too long"),))


def minimal(**changes) -> Autounattend:
    values = dict(computer_name="PC-01", architecture="amd64", language="en-US", ui_language="en-US",
                  input_locale="0409:00000409", firmware="uefi", wim_path="\\\\s\\images\\a.wim", image_index=1,
                  time_zone="UTC", admin_password="pw")
    return Autounattend(**{**values, **changes})


# -- property tests -------------------------------------------------------------------------------

XML_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff",
                           min_codepoint=9).filter(lambda c: ord(c) >= 0x20 or c in "\t\n\r"),
    min_size=1, max_size=40,
)
HOSTILE = st.one_of(XML_TEXT, st.sampled_from(["<b>&amp;</b>", "\"'><!--", "]]>", "Ärger & <Öl>", "名前'\"",
                                               "a\r\nb", "&#x0;", "\u202e\U0001f600"]))


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=HOSTILE, password=HOSTILE, ou=HOSTILE, path=HOSTILE, user=HOSTILE, join_password=HOSTILE,
       online=st.booleans())
def test_any_text_gives_parseable_xml_that_round_trips(name, password, ou, path, user, join_password, online):
    join = (OnlineJoin("yourdom.local", user, "YOURDOM", join_password, ou) if online else OfflineJoin(ou))
    context = minimal(computer_name=name, admin_password=password, wim_path=path, join=join,
                      network=StaticNetwork("00-15-5D-01-02-03", "10.0.0.5/24", "10.0.0.1", ("10.0.0.2",)),
                      first_logon=(Command("cmd.exe /c echo", user),))
    root = parse(context.render())
    shell = component(root, "specialize", "Microsoft-Windows-Shell-Setup")
    assert text(shell, "ComputerName") == name
    assert text(component(root, "windowsPE", "Microsoft-Windows-Setup"),
                "ImageInstall/OSImage/InstallFrom/Path") == path
    oobe = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    assert decoded(text(oobe, "UserAccounts/AdministratorPassword/Value")) == password + "AdministratorPassword"
    assert text(oobe, "FirstLogonCommands/SynchronousCommand/Description") == user
    identification = component(root, "specialize", "Microsoft-Windows-UnattendedJoin").find("u:Identification", NS)
    if online:
        assert text(identification, "Credentials/Username") == user
        assert text(identification, "Credentials/Password") == join_password
        assert text(identification, "MachineObjectOU") == ou
    else:
        assert text(identification, "Provisioning/AccountData") == ou


@hypothesis_settings(max_examples=60, deadline=None)
@given(bad=st.sampled_from(["\x00", "\x01", "\x0b", "\x1f", "\ud800", "\uffff"]), where=st.sampled_from(
    ["computer_name", "admin_password", "wim_path"]))
def test_text_xml_cannot_carry_never_renders(bad, where):
    with pytest.raises(InvalidRequest) as error:
        minimal(**{where: f"a{bad}b"})
    assert list(error.value.errors) == [{"computer_name": "hostname", "admin_password": "os.adminPassword",
                                         "wim_path": "os.imageId"}[where]]


def test_the_spec_example_through_the_dry_run(client, spec_refs):
    body = copy.deepcopy(VARIANTS["static-offline-join"])
    image, node, stored = spec_refs
    body["os"]["imageId"], body["hypervisorNodeId"] = image, node
    body["postInstall"] = spec_example(**stored)["postInstall"]
    plan = client.post("/api/v1/provisioning/tasks", query_string={"dryRun": "true"}, json=body)
    assert plan.status_code == 200, plan.json
    artifacts = plan.json["artifacts"]
    assert {"autounattend.xml", "startnet.cmd", "winpeshl.ini"} <= set(artifacts)
    root = parse(artifacts["autounattend.xml"])
    assert text(component(root, "specialize", "Microsoft-Windows-Shell-Setup"), "ComputerName") == "SQL-SERVER-01"
    notes = "\n".join(json.loads(artifacts["plan.json"])["notes"])
    assert "offline-join blob" in notes and "stands for the MAC" in notes
    assert JOIN_PASSWORD not in str(plan.json) and ADMIN_PASSWORD not in str(plan.json)


@pytest.fixture
def spec_refs(client, settings):
    (settings.effective_images_dir / "2025-std.wim").write_bytes(b"wim")
    image = client.post("/api/v1/provisioning/images", json={
        "name": "Windows Server 2025 Standard", "osType": "windows", "imagePath": "2025-std.wim"}).json["id"]
    node = client.post("/api/v1/provisioning/hypervisors", json={
        "name": "YOURHOST01", "kind": "hyperv", "endpoint": "yourhost01.yourdom.local",
        "username": "YOURDOM\\svc-hyperv", "password": "secret-pass"}).json["id"]
    stored = store_post_install(
        lambda resource, body: client.post(f"/api/v1/provisioning/{resource}", json=body).json["id"])
    return image, node, stored


def test_a_scanned_wim_gives_the_answer_file_its_edition(client, settings, tmp_path):
    from tests.support.wim import build_wim

    build_wim(settings.effective_images_dir / "install.wim", tmp_path)
    image = client.post("/api/v1/provisioning/images", json={"name": "WS2025", "osType": "windows",
                                                              "imagePath": "install.wim"}).json
    scanned = client.post(f"/api/v1/provisioning/images/{image['id']}/scan").json
    assert [(e["index"], e["name"]) for e in scanned["editions"]] == [
        (1, "Windows Server 2025 Standard"), (2, "Windows Server 2025 Standard (Desktop Experience)"),
        (3, "Windows Server 2025 Datacenter (Desktop Experience)")]
    assert all(e["sizeBytes"] and e["sizeBytes"] > 0 for e in scanned["editions"])
    body = {"hostname": "BM-01", "targetType": "baremetal", "macAddress": "52:54:00:12:34:56",
            "os": {"imageId": image["id"], "imageIndex": 3, "language": "de-DE", "adminPassword": "Pa55word!"}}
    plan = client.post("/api/v1/provisioning/tasks", query_string={"dryRun": "true"}, json=body).json
    xml = plan["artifacts"]["autounattend.xml"]
    assert "<Value>3</Value>" in xml and "<UILanguage>en-US</UILanguage>" in xml  # the WIM holds en-US only
    assert "<UserLocale>de-DE</UserLocale>" in xml and "UEFI assumed" in plan["artifacts"]["plan.json"]
    body["os"]["imageIndex"] = 4
    refused = client.post("/api/v1/provisioning/tasks", query_string={"dryRun": "true"}, json=body)
    assert refused.status_code == 400 and "os.imageIndex" in refused.json["errors"]
