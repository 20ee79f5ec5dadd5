"""The WinPE start script: the spec's steps in order, checked error levels, bounded loops, callbacks
whose JSON survives cmd, and nothing in it that cmd would interpret."""

from __future__ import annotations

import json
import re

import pytest

from octoprov.answerfiles.inputs import PackInfo
from octoprov.answerfiles.render import UnsafeValue, cmd_quoted, cmd_word
from octoprov.answerfiles.startnet import startnet_for, winpeshl
from octoprov.errors import InvalidRequest
from tests.support.answer_inputs import TOKEN, check_golden, example, inputs_for, make_settings, replace

KVM_BODY = {"hostname": "KVM-01", "targetType": "kvm", "hypervisorNodeId": 1, "os": {"imageId": 1, "imageIndex": 2,
                                                                                      "adminPassword": "Pa55word!"},
            "vm": {"disks": [{"sizeGb": 60, "purpose": "os"}, {"sizeGb": 20, "purpose": "data"}]}}
DELL = PackInfo("Dell PowerEdge R750", "dell/r750 (2024)", ("storage/perc.inf", "net/bcm.INF"))

# the spec's "Finale startnet.cmd Struktur", each step as the command line that does it
SPEC_STEPS = [
    ("[1] drvload vioscsi", r'^drvload ".*\\vioscsi\.inf"'),
    ("[1] drvload netkvm", r'^drvload ".*\\netkvm\.inf"'),
    ("[2] wpeinit", r"^wpeinit\b"),
    ("[3] wpeutil initializenetwork", r"^wpeutil initializenetwork\b"),
    ("[4] wait for IP", r'^ipconfig \| find "IPv4"'),
    ("[5] net start lanmanworkstation", r"^net start lanmanworkstation\b"),
    ("[6] net use with retry", r'^net use Z: "\\\\%SERVER%\\images"'),
    ("[7] diskpart", r"^diskpart /s\b"),
    ("[8] dism /apply-image", r"^dism /apply-image /imagefile:\"Z:\\windows\\ws2025\\install\.wim\" /index:2 "),
    ("[9] dism /add-driver vioscsi", r'^dism /image:W:\\ /add-driver /driver:".*\\vioscsi\.inf"'),
    ("[9] dism /add-driver netkvm", r'^dism /image:W:\\ /add-driver /driver:".*\\netkvm\.inf"'),
    ("[10] bcdboot", r"^bcdboot W:\\Windows /s S: /f UEFI\b"),
    ("[11] wpeutil reboot (shutdown when Secure Boot comes on after)", r"^wpeutil (reboot|shutdown)\b"),
]


def kvm(**changes) -> str:
    return startnet_for(inputs_for(KVM_BODY, mac="52:54:00:12:34:56", **changes), make_settings()).render()


def hyperv_bios() -> str:
    body = example("dhcp", domain={"join": False}, vm={**example()["vm"], "generation": 1, "secureboot": False})
    return startnet_for(inputs_for(body), make_settings(winpe_share_user="winpe", winpe_share_password="r3ad-0nly.pw"
                                                       )).render()


def lines(script: str) -> list[str]:
    return script.split("\r\n")


def first(script: str, pattern: str) -> int:
    for number, line in enumerate(lines(script)):
        if re.search(pattern, line):
            return number
    raise AssertionError(f"no line matches {pattern}")


def test_golden():
    check_golden("windows/startnet-kvm-uefi-driver-pack.cmd", kvm(packs=(DELL,)))
    check_golden("windows/startnet-hyperv-bios-share-account.cmd", hyperv_bios())
    check_golden("windows/winpeshl.ini", winpeshl())


def test_every_step_of_the_spec_is_there_in_order():
    script = kvm()
    positions = [first(script, pattern) for _, pattern in SPEC_STEPS]
    assert positions == sorted(positions), [name for name, _ in SPEC_STEPS]
    assert len(set(positions)) == len(positions)
    # the injection happens after the image is applied and before bcdboot (INACCESSIBLE_BOOT_DEVICE otherwise)
    assert first(script, r"^dism /apply-image") < first(script, r"/add-driver") < first(script, r"^bcdboot")
    # the answer file lands where Windows reads it at first start, before the reboot
    assert first(script, r"W:\\Windows\\Panther\\unattend\.xml") < first(script, r"^wpeutil (reboot|shutdown)")


def test_crlf_ascii_and_no_findstr():
    script = kvm(packs=(DELL,))
    assert script.endswith("\r\n") and "\n" not in script.replace("\r\n", "")
    assert script.isascii()
    commands = [line for line in lines(script) if line and not line.lower().startswith("rem ")]
    assert not [line for line in commands if "findstr" in line.lower()]
    assert any(" | find " in line for line in commands)


CHECKED = (r"^wpeinit\b", r"^wpeutil initializenetwork\b", r'^drvload ".*\\netkvm\.inf"', r"^diskpart /s\b",
           r"^dism /apply-image\b", r"^dism /image:W:\\ /add-driver /driver:\"X:", r"^copy /y ", r"^bcdboot\b",
           r"^sc query lanmanworkstation")


def test_every_step_checks_its_error_level():
    script_lines = lines(kvm())
    for pattern in CHECKED:
        hits = [n for n, line in enumerate(script_lines) if re.search(pattern, line)]
        assert hits, pattern
        for n in hits:
            assert script_lines[n + 1] == "if errorlevel 1 goto fail", (pattern, script_lines[n + 1])


@pytest.mark.parametrize("label", ["wait_address", "mount_images", "report_again"])
def test_every_wait_loop_is_bounded(label):
    script_lines = lines(kvm())
    start = script_lines.index(f":{label}")
    end = next(n for n in range(start, len(script_lines)) if script_lines[n] == f"goto {label}")
    body = script_lines[start:end]
    assert any(re.search(r"geq \d+ (goto fail|exit /b 1)", line) for line in body), body
    assert any(line.startswith("ping -n ") for line in body)  # waits between attempts


def test_each_step_reports_before_and_after():
    script_lines = lines(kvm(packs=(DELL,)))
    steps = [n for n, line in enumerate(script_lines) if line.startswith('set "STEP=') and "0 start" not in line]
    assert len(steps) == 13
    for here, following in zip(steps, [*steps[1:], len(script_lines)], strict=True):
        section = script_lines[here:following]
        assert section[1] == "call :begin", section[:2]
        assert "call :done" in section or "wpeutil shutdown" in section
    assert 'call :post progress ok "step %STEP% started"' in script_lines
    assert 'call :post progress ok "step %STEP% done"' in script_lines


def _expand(line: str, variables: dict[str, str], args: list[str]) -> str:
    for index, value in enumerate(args, start=1):
        line = line.replace(f"%~{index}", value.strip('"'))
    return re.sub(r"%(\w+)%", lambda m: variables[m.group(1)], line)


def _call_args(call: str) -> list[str]:
    return re.findall(r'"[^"]*"|\S+', call)[1:]


def test_callback_json_survives_cmd_for_every_call():
    script = kvm(packs=(DELL,))
    script_lines = lines(script)
    echo = next(line for line in script_lines if line.startswith('>"%OCTO%\\callback.json" echo '))
    template = echo.split(" echo ", 1)[1]
    assert template.count('"') % 2 == 0  # quotes balanced: nothing after them is taken as a redirection
    steps = [m.group(1) for line in script_lines if (m := re.match(r'set "STEP=(.*)"$', line))]
    reasons = [m.group(1) for line in script_lines if (m := re.match(r'.*set "REASON=(.*)"$', line)) and m.group(1)]
    calls = [line.split("call ", 1)[1] for line in script_lines if "call :post " in line or "call :report " in line]
    assert len(calls) >= 8
    seen_events = set()
    for call in calls:
        args = _call_args(call)
        if args[0] == "%1":  # :report passes its own arguments on
            continue
        if call.startswith(":report"):
            args = [args[0], "ok", args[1]]
        for step in steps:
            for reason in [*reasons, "exit code -1073741510"]:
                variables = {"TASK_ID": "42", "TOKEN": TOKEN, "STEP": step, "REASON": reason,
                             "WAITING": "os_installed", "UNLOADED": "3"}
                body = json.loads(_expand(template, variables, [a.replace("!UNLOADED!", "3") for a in args]))
                assert body["taskId"] == 42 and body["token"] == TOKEN and body["status"] in ("ok", "failed")
                assert set(body) == {"taskId", "token", "event", "status", "message"}
                seen_events.add(body["event"])
    assert seen_events == {"progress", "installer_started", "os_installed"}


def test_a_failure_is_reported_against_the_waited_for_step_naming_the_step():
    script_lines = lines(kvm())
    fail = script_lines[script_lines.index(":fail"):]
    assert 'call :post %WAITING% failed "step %STEP% failed: %REASON%"' in fail
    assert script_lines.index('set "WAITING=installer_started"') < script_lines.index('set "WAITING=os_installed"')
    assert first(kvm(), r"call :report installer_started") < first(kvm(), r'set "WAITING=os_installed"')
    assert first(kvm(), r"^bcdboot") < first(kvm(), r"call :report os_installed") < first(kvm(), r"^wpeutil shutdown")


def test_curl_first_then_powershell():
    script = kvm()
    assert 'if exist "%SystemRoot%\\System32\\curl.exe" set "POST=curl"' in script
    assert "curl.exe -s -S -f " in script and '--data-binary "@%OCTO%\\callback.json" "%CALLBACK_URL%"' in script
    assert "Invoke-RestMethod -Method Post -Uri '%CALLBACK_URL%'" in script
    assert f'set "TOKEN={TOKEN}"' in script and 'set "TASK_ID=42"' in script
    assert 'set "CALLBACK_URL=http://192.0.2.10:8080/api/v1/provisioning/pxe/status"' in script


def test_driver_packs_go_into_winpe_and_the_image():
    script = kvm(packs=(DELL,))
    assert 'net use Y: "\\\\%SERVER%\\drivers" "" /user:guest' in script
    assert 'drvload "Y:\\dell\\r750 (2024)\\storage\\perc.inf" >>"%LOG%" 2>&1 || set /a UNLOADED+=1' in script
    assert 'drvload "Y:\\dell\\r750 (2024)\\net\\bcm.INF"' in script
    assert first(script, r'^drvload "Y:') < first(script, r"^diskpart /s")
    pack = first(script, r'^dism /image:W:\\ /add-driver /driver:"Y:\\dell\\r750 \(2024\)" /recurse')
    assert first(script, r"^dism /apply-image") < pack < first(script, r"^bcdboot")
    assert "Y:" not in kvm()  # no pack, no driver share


def test_not_kvm_means_no_virtio_and_bios_layout():
    script = hyperv_bios()
    assert not [line for line in lines(script) if line.startswith(("drvload ", "dism /image:W:\\ /add-driver"))]
    assert '>>"%DP%" echo convert mbr' in script and '>>"%DP%" echo active' in script
    assert "bcdboot W:\\Windows /s S: /f BIOS" in script and "convert gpt" not in script
    assert 'net use Z: "\\\\%SERVER%\\images" "r3ad-0nly.pw" /user:winpe' in script
    assert "AllowInsecureGuestAuth" not in script  # only guest access needs it
    kvm_without_virtio = startnet_for(inputs_for(KVM_BODY, node_options={"kvm": {"virtioDrivers": False}}),
                                      make_settings()).render()
    assert "drvload \"X:" not in kvm_without_virtio


def test_diskpart_lines_never_end_in_a_digit_before_a_redirection():
    for script in (kvm(), hyperv_bios()):
        for line in lines(script):
            assert not re.search(r"\d>", line.replace("2>&1", "").replace("2>nul", "")), line


def test_bare_metal_firmware_follows_what_ipxe_reported():
    body = {"hostname": "BM-01", "targetType": "baremetal", "macAddress": "52:54:00:12:34:56",
            "os": {"imageId": 1, "adminPassword": "Pa55word!"}}
    bios = startnet_for(inputs_for(body, hardware={"platform": "pcbios"}), make_settings()).render()
    uefi = startnet_for(inputs_for(body, hardware={"platform": "efi"}), make_settings()).render()
    assert "/f BIOS" in bios and "/f UEFI" in uefi


@pytest.mark.parametrize("value", ["a%PATH%", "a!x!", 'a"b', "a&b", "a|b", "a<b", "a>b", "a^b", "a\nb", "a b"])
def test_cmd_words_refuse_what_cmd_interprets(value):
    with pytest.raises(UnsafeValue) as error:
        cmd_word(value)
    assert value not in str(error.value)  # the value may be a password


@pytest.mark.parametrize("value", ["a%b", "a!b", 'a"b', "a&b", "a\rb"])
def test_quoted_cmd_text_refuses_what_quotes_do_not_protect(value):
    with pytest.raises(UnsafeValue):
        cmd_quoted(value)


def test_settings_and_values_scripts_cannot_carry_are_refused_by_name():
    inputs = inputs_for(KVM_BODY)
    with pytest.raises(UnsafeValue) as error:
        startnet_for(inputs, make_settings(winpe_share_user="winpe", winpe_share_password='p"w%x'))
    assert "OCTOPROV_WINPE_SHARE_PASSWORD" in str(error.value) and 'p"w%x' not in str(error.value)
    with pytest.raises(UnsafeValue) as error:
        startnet_for(inputs, make_settings(winpe_share_server="a&b"))
    assert "OCTOPROV_WINPE_SHARE_SERVER" in str(error.value)
    with pytest.raises(UnsafeValue):
        startnet_for(replace(inputs, callback_token='x"&del *'), make_settings())
    with pytest.raises(InvalidRequest) as refused:
        startnet_for(replace(inputs, hostname="A&B"), make_settings())
    assert "hostname" in refused.value.errors


def test_winpe_powers_off_when_secure_boot_comes_on_after_the_install():
    """A KVM generation-2 VM with Secure Boot installs Windows with it off (wimboot is unsigned): WinPE shuts
    down after reporting the OS installed, so Octoprov can turn it on before Windows first starts."""
    secure = lines(kvm())
    assert "wpeutil shutdown" in secure and "wpeutil reboot" not in secure
    body = {**KVM_BODY, "vm": {**KVM_BODY["vm"], "secureboot": False}}
    plain = lines(startnet_for(inputs_for(body, mac="52:54:00:12:34:56"), make_settings()).render())
    assert "wpeutil reboot" in plain and "wpeutil shutdown" not in plain
    assert "wpeutil reboot" in lines(hyperv_bios())
