"""Hostile input at the model level: the corpus of tests/data/hostile-requests.json through
parse_task_request, the checkers behind it, and what a stored task keeps when rules grow stricter.

The API-level half (POST /tasks and its dry run, SQLite and PostgreSQL) is
tests/integration/test_hostile_requests.py."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
from pydantic import ValidationError

from octoprov.errors import InvalidRequest, PermanentError
from octoprov.postinstall.common import unreserved
from octoprov.specs import parse, text_errors
from octoprov.taskspec import TaskSpec, parse_task_request
from octoprov.validation import (
    check_distinguished_name,
    check_hostname,
    check_password,
    check_unreserved_variable,
    check_windows_path,
    storable_problem,
    text_problem,
)
from tests.support.examples import JOIN_PASSWORD, PRODUCT_KEY
from tests.unit.test_taskspec import REFS, changed, static_example

CORPUS = json.loads((Path(__file__).parents[1] / "data" / "hostile-requests.json").read_text())["entries"]
NODES = {"hyperv": 5, "kvm": 6}  # REFS' hypervisors
IMAGES = {"windows": 1, "linux": 2}


def hostile_body(entry: dict) -> dict:
    """The unit tests' example with the entry's base switches, setup and mutation applied."""
    body = changed(static_example(), ("targetType", entry.get("target", "hyperv")),
                   ("hypervisorNodeId", NODES[entry.get("target", "hyperv")]),
                   ("os.imageId", IMAGES[entry.get("image", "windows")]))
    return changed(body, *(tuple(step) for step in entry.get("setup", ())), (entry["path"], entry["value"]))


def _id(entry: dict) -> str:
    return f"{entry['path']}={entry['value']!r}"[:70]


def test_the_corpus_is_large_and_varied():
    assert len(CORPUS) >= 60
    assert len({entry["field"].split(".")[0].split("[")[0] for entry in CORPUS}) >= 8


@pytest.mark.parametrize("entry", CORPUS, ids=[_id(entry) for entry in CORPUS])
def test_each_hostile_request_is_refused_naming_its_field(entry):
    with pytest.raises(InvalidRequest) as raised:
        parse_task_request(hostile_body(entry), {}, REFS)
    errors = raised.value.errors
    assert entry["field"] in errors, (entry["why"], errors)
    assert all(isinstance(path, str) and message for path, message in errors.items())
    assert all(storable_problem(path) is None for path in errors)  # every path can be shown and stored


def test_the_unmutated_bases_are_accepted():
    """So that each refusal above is the entry's doing."""
    bases = {(entry.get("target", "hyperv"), entry.get("image", "windows"), json.dumps(entry.get("setup")))
             for entry in CORPUS}
    for target, image, setup in bases:
        entry = {"target": target, "image": image, "setup": json.loads(setup) or [], "path": "hostname",
                 "value": "WEB-01"}
        body = hostile_body(entry)
        if image == "linux":
            body = changed(body, ("os.imageIndex", 1), ("os.productKey", None))
        assert parse_task_request(body, {}, REFS).hostname == "WEB-01"


# --- the checkers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SERVER", "server", "System", "NULL", "ANONYMOUS", "BATCH", "BUILTIN", "DIALUP",
                                  "INTERACTIVE", "INTERNET", "LOCAL", "NETWORK", "PROXY", "RESTRICTED", "SELF",
                                  "SERVICE", "USERS", "WORLD", "GATEWAY", "GW", "TAC", "CON", "PRN", "AUX", "NUL",
                                  "COM1", "LPT3", "COM0"])
def test_windows_reserved_names_are_refused(name):
    with pytest.raises(ValueError, match=r"reserved|device name"):
        check_hostname(name, "windows")


@pytest.mark.parametrize("name", ["SERVER-01", "SYSTEMS", "web-gw", "LOCALHOST1", "CONSOLE", "NULL1", "PROXY-2"])
def test_names_that_only_contain_a_reserved_word_are_fine(name):
    assert check_hostname(name, "windows") == name


@pytest.mark.parametrize("name", ["server", "gateway", "proxy", "local"])
def test_reserved_words_are_windows_rules_only(name):
    assert check_hostname(name, "linux") == name


@pytest.mark.parametrize(("value", "normalised"), [
    ("D:\\Hyper-V\\Virtual Hard Disks", "D:\\Hyper-V\\Virtual Hard Disks"),
    ("D:\\", "D:\\"),
    ("d:\\vms\\", "d:\\vms\\"),
    ("D:/Hyper-V/VMs", "D:\\Hyper-V\\VMs"),
    ("  E:\\VMs  ", "E:\\VMs"),
    ("\\\\fileserver\\vms", "\\\\fileserver\\vms"),
    ("\\\\fs01.yourdom.local\\hyper-v$\\SQL Servers", "\\\\fs01.yourdom.local\\hyper-v$\\SQL Servers"),
    ("D:\\Données\\Ölfeld 名前", "D:\\Données\\Ölfeld 名前"),
    ("D:\\VMs\\CONSOLE\\nul-data", "D:\\VMs\\CONSOLE\\nul-data"),
    ("D:\\.hidden\\x.y", "D:\\.hidden\\x.y"),
])
def test_windows_paths_accepted(value, normalised):
    assert check_windows_path(value) == normalised


@pytest.mark.parametrize(("value", "message"), [
    ("", "empty"),
    ("VMs", "absolute"),
    ("D:", "absolute"),
    ("D:VMs", "absolute"),
    ("\\VMs", "absolute"),
    ("1:\\VMs", "absolute"),
    ("\\\\server", "UNC"),
    ("\\\\server\\", "UNC"),
    ("\\\\?\\D:\\VMs", "\\?"),
    ("\\\\.\\PhysicalDrive0", "device path"),
    ("D:\\a|b", "\\|"),
    ("D:\\a<b>", "< >"),
    ("D:\\a:b", ":"),
    ("D:\\a\\\\b", "empty folder name"),
    ("D:\\a\\..\\b", "\\.\\."),
    ("D:\\a\\.\\b", "\\."),
    ("D:\\VMs.", "dot"),
    ("D:\\VMs \\x", "space"),
    ("D:\\LPT1\\x", "device name"),
    ("D:\\nul.txt", "device name"),
    ("D:\\x\u0009y", "control"),
    ("D:\\x\ud800", "surrogate"),
    ("D:\\" + "x" * 256, "255"),
    ("D:\\" + "x" * 500, "500"),
])
def test_windows_paths_refused(value, message):
    with pytest.raises(ValueError, match=message):
        check_windows_path(value)


@pytest.mark.parametrize("password", ["Adm1n-Pa55word!", "pä$$ wörd 名前 🚀", "a'\"<>&%!^", " leading space"])
def test_passwords_people_can_type_are_fine(password):
    assert check_password(password) == password


@pytest.mark.parametrize(("password", "message"), [
    ("a\x01b", "XML cannot carry"), ("a\x1fb", "XML cannot carry"), ("a\tb", "control"), ("a\nb", "control"),
    ("a\x7fb", "control"), ("a\x85b", "control"), ("a\ud800b", "surrogate"), ("a\uffffb", "U\\+FFFF"),
    ("a\x00b", "NUL"),
])
def test_passwords_with_control_characters_are_refused_without_repeating_them(password, message):
    with pytest.raises(ValueError, match=message) as raised:
        check_password(password)
    assert password not in str(raised.value)


@pytest.mark.parametrize(("text", "multiline", "problem"), [
    ("plain", False, None), ("two\nlines\r\n\ttabbed", True, None), ("two\nlines", False, "control"),
    ("bell\x07", True, "control"), ("\x1b[0m", True, "control"), ("\x9b", False, "control"),
    ("\ud800", True, "surrogate"), ("\udfff", False, "surrogate"), ("\ufffe", True, "U\\+FFFE"),
    ("nul\x00", True, "NUL"), ("\u2028\u200b\ufeff\U0001f600", False, None),
])
def test_text_problem(text, multiline, problem):
    found = text_problem(text, multiline=multiline)
    if problem is None:
        assert found is None
    else:
        assert found is not None and re.search(problem, found)


@pytest.mark.parametrize("multiline", [False, True])
def test_ascii_text_is_judged_as_the_character_rule_judges_it(multiline):
    """ASCII text takes a shortcut (isprintable); every ASCII character, alone and among others, gets the
    answer of the rule it stands for: control characters (Unicode category Cc) refused, line breaks aside."""
    allowed = "\t\n\r" if multiline else ""
    for code in range(128):
        char = chr(code)
        refused = unicodedata.category(char) == "Cc" and char not in allowed and char != "\x00"
        for text in (char, f"a{char}b", f"{char} \t"):
            found = text_problem(text, multiline=multiline)
            if char == "\x00":
                assert found is not None and "NUL" in found
            elif refused or ("\t" not in allowed and "\t" in text):
                assert found is not None and "control" in found, (text, found)
            else:
                assert found is None, (text, found)


@pytest.mark.parametrize("dn", ['OU=SQL\\"Servers\\",DC=yourdom,DC=local', "OU=a\\+b\\;c\\<d\\>,DC=yourdom,DC=local",
                                "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local", "OU=a\\,b,DC=yourdom,DC=local"])
def test_escaped_dn_specials_are_fine(dn):
    assert check_distinguished_name(dn) == dn


@pytest.mark.parametrize("dn", ['OU=SQL" /reuse "x,DC=yourdom,DC=local', "OU=a+CN=b,DC=yourdom,DC=local",
                                "OU=a;DC=yourdom,DC=local", "OU=<x>,DC=yourdom,DC=local"])
def test_unescaped_dn_specials_are_refused(dn):
    with pytest.raises(ValueError, match="escaped"):
        check_distinguished_name(dn)


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_AUDIT", "PATH", "BASH_ENV", "BASHOPTS", "GCONV_PATH",
                                  "GLIBC_TUNABLES", "MALLOC_CHECK_", "NLSPATH", "LC_ALL", "input", "Input",
                                  "ErrorAction", "psitem", "args"])
def test_reserved_variables(name):
    with pytest.raises(ValueError, match="choose another name"):
        check_unreserved_variable(name)


def test_reserved_variables_in_package_schemas_still_refused():
    from octoprov.packages import PackageSpec

    body = {"name": "x", "osType": "linux", "script": "true",
            "parametersSchema": {"properties": {"GLIBC_TUNABLES": {"type": "string"}}}}
    with pytest.raises(InvalidRequest) as raised:
        parse(PackageSpec, body)
    assert list(raised.value.errors) == ["parametersSchema.properties.GLIBC_TUNABLES"]


# --- the generic guard -----------------------------------------------------------------------------


def test_text_errors_names_values_and_escapes_keys():
    body = {"a": ["ok", "b\x00d"], "k\ud800": {"x": 1}, "n": {"deep": "\ud800"}}
    found = text_errors(body, lambda _path, text: storable_problem(text))
    assert set(found) == {"a[1]", "k\\ud800", "n.deep"}
    assert found["k\\ud800"].startswith("the name ")


@pytest.mark.parametrize("body", [{"name": "x\ud800"}, {"name\ud800": "x"}, {"name": "x", "description": "\x00"}])
def test_every_body_refuses_what_no_database_stores(body):
    """parse() is every resource's way in: templates, packages, groups, images, nodes as well as tasks."""
    from octoprov.groups import GroupSpec

    with pytest.raises(InvalidRequest) as raised:
        parse(GroupSpec, body)
    assert all(storable_problem(path) is None for path in raised.value.errors)


# --- what is stored stays readable ------------------------------------------------------------------


def test_a_task_stored_before_the_stricter_rules_still_reads_back():
    """A task accepted earlier must run, or be rolled back, though today's rules would refuse its request."""
    config = static_example()
    config.update(hostname="SERVER")
    config["vm"]["storagePath"] = "VMs"
    config["domain"]["ou"] = 'OU=Old"Quote,DC=yourdom,DC=local'
    config["postInstall"]["runScripts"][0]["parameters"] = {"LD_PRELOAD": "/old.so", "Message": "a\x1bb"}
    config["os"]["adminPassword"] = None
    secrets = {"os.adminPassword": "old\x01pw", "os.productKey": PRODUCT_KEY,
               "domain.serviceAccount.password": JOIN_PASSWORD}
    spec = TaskSpec.from_stored(config, secrets, "windows")
    assert (spec.hostname, spec.vm.storage_path, spec.os.admin_password) == ("SERVER", "VMs", "old\x01pw")
    assert spec.post_install.run_scripts[0].parameters["LD_PRELOAD"] == "/old.so"
    config["domain"]["serviceAccount"]["password"] = JOIN_PASSWORD
    with pytest.raises(ValidationError, match="reserved word"):  # a new request like it is refused
        TaskSpec.model_validate(config, context={"os_type": "windows"})


def test_the_runner_refuses_reserved_parameters_of_such_a_task():
    assert unreserved("Script a.sh", {"GREETING": "hi"}) == {"GREETING": "hi"}
    with pytest.raises(PermanentError, match=r"LD_PRELOAD.*not run"):
        unreserved("Script a.sh", {"GREETING": "hi", "LD_PRELOAD": "/tmp/x.so"})
