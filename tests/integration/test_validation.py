"""The checkers in octoprov.validation: what each accepts (and how it normalises) and what it refuses."""

from __future__ import annotations

import re

import pytest

from octoprov.validation import (
    WINDOWS_LANGUAGES,
    WINDOWS_TIMEZONES,
    canonical_mac,
    check_account_name,
    check_display_name,
    check_distinguished_name,
    check_fqdn,
    check_hostname,
    check_ipv4,
    check_language,
    check_ou_in_domain,
    check_parameter_name,
    check_product_key,
    check_script_name,
    check_static_network,
    check_timezone,
    iana_timezone,
    parse_subnet,
)


def cases(*rows):
    """pytest.param rows with the first element as the id."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


# --- hostnames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "os_type"),
    cases(
        ("spec example", "SQL-SERVER-01", "windows"),
        ("15 chars windows", "A" * 15, "windows"),
        ("single char", "a", "windows"),
        ("inner hyphen", "web-01", "linux"),
        ("63 chars linux", "a" * 63, "linux"),
        ("digits and letters", "1host", "windows"),
        ("os type case-insensitive", "A" * 15, "Windows"),
    ),
)
def test_hostname_accepted(value, os_type):
    assert check_hostname(value, os_type) == value


@pytest.mark.parametrize(
    ("value", "os_type", "message"),
    cases(
        ("empty", "", "windows", "empty"),
        ("16 chars windows (NetBIOS)", "A" * 16, "windows", "NetBIOS"),
        ("64 chars linux", "a" * 64, "linux", "63"),
        ("underscore", "sql_server", "windows", "letters, digits and hyphens"),
        ("dot", "sql.server", "linux", "letters, digits and hyphens"),
        ("space", "sql server", "windows", "letters, digits and hyphens"),
        ("non-ascii", "sérveur", "windows", "letters, digits and hyphens"),
        ("leading hyphen", "-sql", "windows", "hyphen"),
        ("trailing hyphen", "sql-", "linux", "hyphen"),
        ("all digits", "12345", "windows", "digits only"),
        ("trailing newline", "sql\n", "linux", "letters, digits and hyphens"),
    ),
)
def test_hostname_rejected(value, os_type, message):
    with pytest.raises(ValueError, match=message):
        check_hostname(value, os_type)


# --- MAC addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    cases(
        ("colons upper", "00:15:5D:01:02:03"),
        ("colons lower", "00:15:5d:01:02:03"),
        ("hyphens", "00-15-5d-01-02-03"),
        ("hyphens upper", "00-15-5D-01-02-03"),
        ("cisco dotted", "0015.5d01.0203"),
        ("bare hex", "00155D010203"),
    ),
)
def test_mac_canonicalised(value):
    assert canonical_mac(value) == "00:15:5d:01:02:03"


@pytest.mark.parametrize(
    ("value", "message"),
    cases(
        ("mixed separators", "00:15-5d:01:02:03", "not a MAC"),
        ("too short", "00:15:5d:01:02", "not a MAC"),
        ("too long", "00:15:5d:01:02:03:04", "not a MAC"),
        ("bare 11 hex", "00155D01020", "not a MAC"),
        ("non-hex", "00:15:5g:01:02:03", "not a MAC"),
        ("single-digit octets", "0:15:5d:1:2:3", "not a MAC"),
        ("cisco wrong grouping", "00155.d010.203", "not a MAC"),
        ("surrounding space", " 00:15:5d:01:02:03", "not a MAC"),
        ("empty", "", "not a MAC"),
        ("broadcast", "FF:FF:FF:FF:FF:FF", "broadcast"),
        ("all zero", "000000000000", "all-zero"),
        ("multicast", "01:00:5e:00:00:01", "multicast"),
    ),
)
def test_mac_rejected(value, message):
    with pytest.raises(ValueError, match=message):
        canonical_mac(value)


# --- IPv4 --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["198.51.100.50", "0.0.0.0", "255.255.255.255", "10.0.0.1"])  # noqa: S104
def test_ipv4_accepted(value):
    assert check_ipv4(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    cases(
        ("octet too big", "198.51.100.256", "not an IPv4"),
        ("three octets", "198.51.100", "not an IPv4"),
        ("leading zero", "198.051.100.1", "not an IPv4"),
        ("hostname", "dns.yourdom.local", "not an IPv4"),
        ("with prefix", "198.51.100.0/24", "not an IPv4"),
        ("empty", "", "not an IPv4"),
        ("ipv6", "2001:db8::1", "IPv6"),
        ("not a string", 3325256754, "not an IPv4"),
    ),
)
def test_ipv4_rejected(value, message):
    with pytest.raises(ValueError, match=message):
        check_ipv4(value)


@pytest.mark.parametrize(
    ("value", "prefix"),
    cases(
        ("mask /24", "255.255.255.0", 24),
        ("mask /32", "255.255.255.255", 32),
        ("mask /1", "128.0.0.0", 1),
        ("mask /22", "255.255.252.0", 22),
        ("prefix", "24", 24),
        ("slash prefix", "/24", 24),
        ("prefix 32", "32", 32),
        ("int", 16, 16),
    ),
)
def test_subnet_parsed(value, prefix):
    assert parse_subnet(value) == prefix


@pytest.mark.parametrize(
    ("value", "message"),
    cases(
        ("non-contiguous mask", "255.0.255.0", "contiguous"),
        ("inverted mask", "0.0.0.255", "contiguous"),
        ("zero mask", "0.0.0.0", "between 1 and 32"),  # noqa: S104
        ("prefix 0", "0", "between 1 and 32"),
        ("prefix 33", "/33", "between 1 and 32"),
        ("three digits", "100", "expected"),
        ("garbage", "abc", "expected"),
        ("bad mask", "255.255.255.256", "not a subnet mask"),
        ("bool", True, "expected"),
    ),
)
def test_subnet_rejected(value, message):
    with pytest.raises(ValueError, match=message):
        parse_subnet(value)


@pytest.mark.parametrize(
    ("ip", "subnet", "gateway"),
    cases(
        ("spec example", "198.51.100.50", "255.255.255.0", "198.51.100.1"),
        ("no gateway", "198.51.100.50", "24", None),
        ("/31 point-to-point", "198.51.100.0", "31", "198.51.100.1"),
        ("/32 host route", "198.51.100.7", "/32", None),
    ),
)
def test_static_network_accepted(ip, subnet, gateway):
    assert check_static_network(ip, subnet, gateway) == {}


@pytest.mark.parametrize(
    ("ip", "subnet", "gateway", "expected"),
    cases(
        ("bad ip", "198.51.100.300", "24", "198.51.100.1", {"ip": "not an IPv4"}),
        ("bad subnet", "198.51.100.50", "255.0.255.0", None, {"subnet": "contiguous"}),
        ("bad gateway", "198.51.100.50", "24", "gw", {"gateway": "not an IPv4"}),
        ("network address", "198.51.100.0", "24", None, {"ip": "network address"}),
        ("broadcast address", "198.51.100.255", "24", None, {"ip": "broadcast address"}),
        ("loopback", "127.0.0.5", "8", None, {"ip": "usable host"}),
        ("gateway outside", "198.51.100.50", "24", "203.0.113.1", {"gateway": "outside 198.51.100.0/24"}),
        ("gateway is ip", "198.51.100.50", "24", "198.51.100.50", {"gateway": "differ"}),
        ("gateway broadcast", "198.51.100.50", "24", "198.51.100.255", {"gateway": "broadcast"}),
        ("two wrong", "198.51.100.300", "x", "198.51.100.1", {"ip": "not an IPv4", "subnet": "expected"}),
        ("ip not judged without subnet", "198.51.100.0", "x", None, {"subnet": "expected"}),
    ),
)
def test_static_network_rejected(ip, subnet, gateway, expected):
    errors = check_static_network(ip, subnet, gateway)
    assert set(errors) == set(expected)
    for field, fragment in expected.items():
        assert fragment in errors[field]


# --- languages and time zones ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    cases(
        ("exact", "de-DE", "de-DE"),
        ("lower", "en-us", "en-US"),
        ("upper", "FR-FR", "fr-FR"),
        ("script subtag", "SR-latn-rs", "sr-Latn-RS"),
    ),
)
def test_language_accepted(value, canonical):
    assert check_language(value) == canonical


def test_language_list_is_the_windows_one():
    assert len(WINDOWS_LANGUAGES) == 38
    assert {"de-DE", "en-US", "sr-Latn-RS", "zh-TW"} <= WINDOWS_LANGUAGES


@pytest.mark.parametrize(
    ("value", "suggestion"),
    cases(
        ("no pack", "de-AT", "de-DE"),
        ("underscore", "en_US", "en-US"),
        ("region typo", "en-UK", "en-US"),
    ),
)
def test_language_rejected_with_suggestion(value, suggestion):
    with pytest.raises(ValueError, match=f"did you mean .*{suggestion}"):
        check_language(value)


@pytest.mark.parametrize("value", ["", "klingon", "x" * 1000])
def test_language_rejected(value):
    with pytest.raises(ValueError, match="not a known Windows language tag"):
        check_language(value)


@pytest.mark.parametrize(
    ("value", "canonical", "iana"),
    cases(
        ("spec default", "W. Europe Standard Time", "W. Europe Standard Time", "Europe/Berlin"),
        ("lower case", "w. europe standard time", "W. Europe Standard Time", "Europe/Berlin"),
        ("UTC", "UTC", "UTC", "Etc/UTC"),
        ("pacific", "Pacific Standard Time", "Pacific Standard Time", "America/Los_Angeles"),
    ),
)
def test_timezone_accepted(value, canonical, iana):
    assert check_timezone(value) == canonical
    assert iana_timezone(value) == iana


def test_timezone_list_comes_from_cldr():
    assert len(WINDOWS_TIMEZONES) > 100
    assert "UTC" in WINDOWS_TIMEZONES


@pytest.mark.parametrize(
    ("value", "message"),
    cases(
        ("iana name", "Europe/Berlin", "not a known Windows time zone ID"),
        ("typo", "W. Europe Standart Time", "did you mean W. Europe Standard Time"),
        ("empty", "", "not a known Windows time zone ID"),
    ),
)
def test_timezone_rejected(value, message):
    with pytest.raises(ValueError, match=message):
        check_timezone(value)
    with pytest.raises(ValueError, match=message):
        iana_timezone(value)


# --- domains, OUs, accounts --------------------------------------------------------------


@pytest.mark.parametrize("value", ["yourdom.local", "corp.example.com", "a.b", "x-1.example.org", "A" * 63 + ".local"])
def test_fqdn_accepted(value):
    assert check_fqdn(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    cases(
        ("single label", "yourdom", "single-label"),
        ("empty", "", "single-label"),
        ("empty label", "yourdom..local", "empty label"),
        ("trailing dot", "yourdom.local.", "empty label"),
        ("label too long", "a" * 64 + ".local", "63"),
        ("too long", ".".join(["a" * 60] * 5), "253"),
        ("underscore", "your_dom.local", "letters, digits"),
        ("leading hyphen", "-yourdom.local", "letters, digits"),
        ("space", "your dom.local", "letters, digits"),
        ("ip address", "198.51.100.1", "all digits"),
    ),
)
def test_fqdn_rejected(value, message):
    with pytest.raises(ValueError, match=message):
        check_fqdn(value)


@pytest.mark.parametrize(
    "value",
    cases(
        ("spec example", "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local"),
        ("lower-case keys", "ou=Servers,dc=yourdom,dc=local"),
        ("spaces after commas", "OU=Servers, DC=yourdom, DC=local"),
        ("escaped comma", r"OU=SQL\, Reporting,DC=yourdom,DC=local"),
        ("container", "CN=Computers,DC=yourdom,DC=local"),
        ("domain root", "DC=yourdom,DC=local"),
    ),
)
def test_distinguished_name_accepted(value):
    assert check_distinguished_name(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    cases(
        ("empty", "", "empty"),
        ("no DC", "OU=Servers", "DC="),
        ("unknown key", "O=Servers,DC=yourdom,DC=local", "OU=, CN= or DC="),
        ("no equals", "Servers,DC=yourdom,DC=local", "OU=, CN= or DC="),
        ("empty value", "OU=,DC=yourdom,DC=local", "empty value"),
        ("unescaped comma", "OU=SQL, Servers,DC=yourdom,DC=local", "OU=, CN= or DC="),
        ("trailing comma", "OU=Servers,DC=yourdom,DC=local,", "OU=, CN= or DC="),
        ("DC not last", "DC=yourdom,OU=Servers,DC=local", "come last"),
        ("lone backslash", "OU=Servers,DC=yourdom,DC=local\\", "backslash"),
        ("too long", "OU=" + "a" * 490 + ",DC=yourdom,DC=local", "500"),
        ("control char", "OU=Serv\x00ers,DC=yourdom,DC=local", "control"),
    ),
)
def test_distinguished_name_rejected(value, message):
    with pytest.raises(ValueError, match=message):
        check_distinguished_name(value)


def test_ou_in_domain():
    ou = "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local"
    assert check_ou_in_domain(ou, "yourdom.local") == ou
    assert check_ou_in_domain(ou, "YOURDOM.LOCAL") == ou
    with pytest.raises(ValueError, match=re.escape("belongs to the domain yourdom.local, not otherdom.local")):
        check_ou_in_domain(ou, "otherdom.local")
    with pytest.raises(ValueError, match="belongs to the domain local"):
        check_ou_in_domain("OU=x,DC=local", "yourdom.local")


@pytest.mark.parametrize("value", ["YOURDOM\\svc-domainjoin", "svc-domainjoin@yourdom.local", "Administrator"])
def test_account_name_accepted(value):
    assert check_account_name(value) == value


@pytest.mark.parametrize(
    "value",
    cases(
        ("empty", ""),
        ("too long", "a" * 257),
        ("empty domain", "\\svc"),
        ("empty user", "YOURDOM\\"),
        ("two backslashes", "YOURDOM\\svc\\x"),
        ("empty upn suffix", "svc@"),
        ("two ats", "svc@a@b"),
        ("forbidden char", "svc:join"),
        ("control char", "svc\tjoin"),
        ("padded", " svc "),
    ),
)
def test_account_name_rejected(value):
    with pytest.raises(ValueError, match=r"DOMAIN|256|control"):
        check_account_name(value)


# --- product keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    cases(
        ("server 2022 gvlk", "VDYBN-27WPP-V4HQT-9VMD4-VMK7H", "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"),
        ("lower case", "vdybn-27wpp-v4hqt-9vmd4-vmk7h", "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"),
        ("windows 10 pro gvlk", "W269N-WFGWX-YVC9B-4J6C9-T83GX", "W269N-WFGWX-YVC9B-4J6C9-T83GX"),
        ("windows 7 style, no N", "FJ82H-XT6CR-J8D7P-XQJJ2-GPDD4", "FJ82H-XT6CR-J8D7P-XQJJ2-GPDD4"),
    ),
)
def test_product_key_accepted(value, canonical):
    assert check_product_key(value) == canonical


@pytest.mark.parametrize(
    ("value", "message"),
    cases(
        ("spec placeholder", "XXXXX-XXXXX-XXXXX-XXXXX-XXXXX", "placeholder"),
        ("other placeholder", "bbbbb-bbbbb-bbbbb-bbbbb-bbbbb", "placeholder"),
        ("letter A", "AAAAA-27WPP-V4HQT-9VMD4-VMK7H", "five groups of five"),
        ("digit 0", "VDYB0-27WPP-V4HQT-9VMD4-VMK7H", "five groups of five"),
        ("two Ns", "VDYBN-27WPN-V4HQT-9VMD4-VMK7H", "at most one N"),
        ("no hyphens", "VDYBN27WPPV4HQT9VMD4VMK7H", "five groups of five"),
        ("four groups", "VDYBN-27WPP-V4HQT-9VMD4", "five groups of five"),
        ("group of six", "VDYBNB-27WPP-V4HQT-9VMD4-VMK7H", "five groups of five"),
        ("empty", "", "five groups of five"),
    ),
)
def test_product_key_rejected(value, message):
    with pytest.raises(ValueError, match=message):
        check_product_key(value)


def test_product_key_not_repeated_in_message():
    with pytest.raises(ValueError) as raised:
        check_product_key("BCDF0-GHJKM-PQRTV-WXY23-46789")
    assert "GHJKM" not in str(raised.value)


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["Configure-Firewall.ps1", "setup_sql.ps1", "a", "run.sh", "x" * 100])
def test_script_name_accepted(value):
    assert check_script_name(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    cases(
        ("empty", "", "1 to 100"),
        ("too long", "x" * 101, "1 to 100"),
        ("hidden", ".profile.ps1", "dot"),
        ("parent dir", "..", "dot"),
        ("unix path", "scripts/run.ps1", "not a path"),
        ("traversal", "../evil.ps1", "not a path"),
        ("windows path", "C:\\run.ps1", "not a path"),
        ("space", "Configure Firewall.ps1", "letters, digits"),
        ("semicolon", "a;rm.ps1", "letters, digits"),
    ),
)
def test_script_name_rejected(value, message):
    with pytest.raises(ValueError, match=message):
        check_script_name(value)


@pytest.mark.parametrize("value", ["instanceName", "_x", "A1_b2", "x" * 64])
def test_parameter_name_accepted(value):
    assert check_parameter_name(value) == value


@pytest.mark.parametrize("value", ["", "1st", "instance-name", "a b", "x" * 65, "ä"])
def test_parameter_name_rejected(value):
    with pytest.raises(ValueError):
        check_parameter_name(value)


@pytest.mark.parametrize(
    ("value", "max_len", "normalised"),
    cases(
        ("plain", "SQL Server 2022", 255, "SQL Server 2022"),
        ("stripped", "  SQL  ", 255, "SQL"),
        ("unicode", "Serveur de base de données", 255, "Serveur de base de données"),
        ("at the limit", "x" * 10, 10, "x" * 10),
    ),
)
def test_display_name_accepted(value, max_len, normalised):
    assert check_display_name(value, max_len) == normalised


@pytest.mark.parametrize(
    ("value", "max_len", "message"),
    cases(
        ("empty", "", 255, "empty"),
        ("blank", "   ", 255, "empty"),
        ("too long", "x" * 256, 255, "255"),
        ("custom limit", "x" * 11, 10, "10"),
        ("newline", "SQL\nServer", 255, "control"),
        ("nul", "SQL\x00", 255, "control"),
    ),
)
def test_display_name_rejected(value, max_len, message):
    with pytest.raises(ValueError, match=message):
        check_display_name(value, max_len)


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Std", "description": "a\x00b"}, "description"),
    ({"name": "Std", "defaultDisks": [{"sizeGb": 10, "purpose": "os"}], "timezone": "UTC\x00"}, "timezone"),
], ids=["text", "also-invalid"])
def test_nul_characters_are_a_400_naming_the_field(client, body, field):
    """PostgreSQL text cannot hold NUL: refused before anything is stored, on both databases."""
    response = client.post("/api/v1/provisioning/templates", json=body)
    assert response.status_code == 400, response.json
    assert "NUL" in response.json["errors"].get(field, ""), response.json
    assert client.get("/api/v1/provisioning/templates").json["total"] == 0
