"""The WinPE share's smb.conf: the spec's lessons, SMB1 only on request, read-only shares, accepted by testparm."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from octoprov.answerfiles.render import UnsafeValue
from octoprov.answerfiles.samba import main, smb_conf
from octoprov.errors import InvalidRequest
from tests.support.answer_inputs import make_settings
from tests.support.smbconf import sections


def test_defaults_follow_the_spec_lessons_without_smb1():
    conf = sections(smb_conf(make_settings(), "/srv/images", "/srv/drivers"))
    glob = conf["global"]
    assert glob["name resolve order"] == "bcast host"
    assert glob["dns proxy"] == "no" and glob["hostname lookups"] == "no"
    assert glob["server min protocol"] == "SMB2_02" and "ntlm auth" not in glob
    assert glob["map to guest"] == "Bad User"
    assert conf["images"] == {"comment": "Octoprov images (read-only, for WinPE)", "path": "/srv/images",
                              "read only": "yes", "browseable": "yes", "wide links": "no", "guest ok": "yes",
                              "guest only": "yes"}
    assert conf["drivers"]["path"] == "/srv/drivers" and conf["drivers"]["read only"] == "yes"


def test_smb1_only_when_enabled():
    glob = sections(smb_conf(make_settings(samba_smb1=True), "/srv/images", "/srv/drivers"))["global"]
    assert glob["server min protocol"] == "NT1" and glob["ntlm auth"] == "ntlmv1-permitted"


def test_per_deployment_account_instead_of_guest():
    conf = sections(smb_conf(make_settings(winpe_share_user="winpe", winpe_share_password="r3ad-0nly",
                                           winpe_share_name="wim", winpe_drivers_share_name="drv"),
                             "/srv/images", "/srv/drivers"))
    assert conf["global"]["map to guest"] == "Never"
    assert conf["wim"]["valid users"] == "winpe" and conf["wim"]["guest ok"] == "no"
    assert conf["drv"]["valid users"] == "winpe"
    assert "r3ad-0nly" not in smb_conf(make_settings(winpe_share_user="winpe", winpe_share_password="r3ad-0nly"))


def test_folders_default_to_the_settings(tmp_path):
    settings = make_settings(data_dir=tmp_path)
    conf = sections(smb_conf(settings))
    assert conf["images"]["path"] == str(settings.effective_images_dir)
    assert conf["drivers"]["path"] == str(settings.effective_drivers_dir)


@pytest.mark.parametrize("path", ["relative/images", "/srv/images\n[evil]", " /srv/images"])
def test_paths_that_would_break_the_file_are_refused(path):
    with pytest.raises(InvalidRequest) as error:
        smb_conf(make_settings(), path, "/srv/drivers")
    assert "imagesPath" in error.value.errors


def test_share_names_that_would_break_the_file_are_refused():
    with pytest.raises(UnsafeValue) as error:
        smb_conf(make_settings(winpe_share_name="images]\n[x"))
    assert "OCTOPROV_WINPE_SHARE_NAME" in str(error.value)


@pytest.mark.skipif(shutil.which("testparm") is None, reason="testparm (Debian samba-common-bin) is not installed")
@pytest.mark.parametrize("options", [{}, {"samba_smb1": True, "winpe_share_user": "winpe",
                                          "winpe_share_password": "r3ad-0nly"}], ids=["guest", "smb1-account"])
def test_testparm_accepts_it(tmp_path, options):
    path = tmp_path / "smb.conf"
    path.write_text(smb_conf(make_settings(**options), str(tmp_path), str(tmp_path)))
    result = subprocess.run(["testparm", "-s", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Unknown parameter" not in result.stderr and "Ignoring" not in result.stderr
    assert "name resolve order = bcast host" in result.stdout


def test_the_module_prints_it(capsys, monkeypatch):
    monkeypatch.setenv("OCTOPROV_BOOT_SERVER_ADDRESS", "192.0.2.10")
    assert main(["--images-path", "/images", "--drivers-path", "/drivers"]) == 0
    out = capsys.readouterr().out
    assert "path = /images" in out and "path = /drivers" in out
