"""The domain-join package without a domain: which backend the settings choose, how a save file becomes
a blob, how an account binds. The real domain controller is in tests/integration/test_active_directory.py."""

from __future__ import annotations

import base64

import pytest

from octoprov.domainjoin import SettingsChosen, backend_for, domain_join_backend
from octoprov.domainjoin.directory import Credentials, bind_name, domain_dn, refusal
from octoprov.domainjoin.djoin import DjoinDomainJoin
from octoprov.domainjoin.samba import SambaDomainJoin, _blob, provision_blob
from octoprov.errors import PermanentError
from octoprov.settings import Settings

BLOB = base64.b64encode(b"ODJ_PROVISION_DATA for WEB01").decode()


def test_the_settings_choose_the_backend(tmp_path):
    default, samba = Settings(data_dir=tmp_path), Settings(data_dir=tmp_path, domain_join_backend="samba")
    assert isinstance(backend_for(default), DjoinDomainJoin)  # today's behaviour unless told otherwise
    assert isinstance(domain_join_backend(samba), SambaDomainJoin)
    chosen = domain_join_backend()  # a target being built: the task's settings decide when it runs
    assert isinstance(chosen, SettingsChosen)
    assert isinstance(chosen.backend(samba), SambaDomainJoin) and isinstance(chosen.backend(default), DjoinDomainJoin)


@pytest.mark.parametrize("data", [
    ("\ufeff" + BLOB + "\x00").encode("utf-16-le"),  # net's save file, as djoin.exe writes it
    (BLOB + "\n").encode("ascii"),
])
def test_a_save_file_becomes_the_base64_blob(data):
    assert _blob(data) == BLOB


@pytest.mark.parametrize("data", [b"", b"not base64 at all!", b"\xff\xfe\x00\xd8"])
def test_a_save_file_without_a_blob_fails_the_step(data):
    with pytest.raises(PermanentError):
        _blob(data)


def test_accounts_bind_as_ad_takes_them():
    assert bind_name("svc-join", "yourdom.local") == "svc-join@yourdom.local"
    assert bind_name("YOURDOM\\svc-join", "yourdom.local") == "YOURDOM\\svc-join"
    assert bind_name("svc@other.local", "yourdom.local") == "svc@other.local"
    assert domain_dn("yourdom.local") == "DC=yourdom,DC=local"
    assert refusal("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 775, v4563") == \
        "the account is locked out"


def test_without_net_the_step_says_what_is_missing(tmp_path):
    settings = Settings(data_dir=tmp_path, domain_join_backend="samba", samba_net=str(tmp_path / "no-net"))
    with pytest.raises(PermanentError, match="OCTOPROV_SAMBA_NET"):
        provision_blob(settings, Credentials("svc@yourdom.local", "secret"), "yourdom.local", "WEB01",
                       "dc01.yourdom.local")
