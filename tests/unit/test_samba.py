"""The WinPE share's smb.conf: the spec's lessons, SMB1 only on request, read-only shares, accepted by testparm."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from octoprov.answerfiles.render import UnsafeValue
from octoprov.answerfiles.samba import MADE_BEFOREHAND, SAMBA_DIR_LAYOUT, main, smb_conf
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
    assert glob["smb ports"] == "445", "WinPE uses 445; the NetBIOS session port 139 stays closed"
    assert not set(SAMBA_DIR_LAYOUT) & set(glob), "Samba's own folders stay the build's unless asked"
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


@pytest.mark.parametrize("path", ["relative/images", "/srv/images\n[evil]", " /srv/images", "/srv/%U"])
def test_paths_that_would_break_the_file_are_refused(path):
    with pytest.raises(InvalidRequest) as error:
        smb_conf(make_settings(), path, "/srv/drivers")
    assert "imagesPath" in error.value.errors
    with pytest.raises(InvalidRequest) as error:
        smb_conf(make_settings(), "/srv/images", "/srv/drivers", path)
    assert "sambaDir" in error.value.errors


def test_samba_dir_holds_every_file_samba_writes():
    glob = sections(smb_conf(make_settings(), "/srv/images", "/srv/drivers", "/var/lib/octoprov-samba"))["global"]
    assert {name: glob[name] for name in SAMBA_DIR_LAYOUT} == {
        "private dir": "/var/lib/octoprov-samba/private", "lock directory": "/var/lib/octoprov-samba/lock",
        "state directory": "/var/lib/octoprov-samba/state", "cache directory": "/var/lib/octoprov-samba/cache",
        "pid directory": "/var/lib/octoprov-samba/run", "ncalrpc dir": "/var/lib/octoprov-samba/run/ncalrpc",
        "log file": "/var/lib/octoprov-samba/log/log.%m"}
    assert set(MADE_BEFOREHAND) == {place.split("/")[0] for place in SAMBA_DIR_LAYOUT.values()}


def test_share_names_that_would_break_the_file_are_refused():
    with pytest.raises(UnsafeValue) as error:
        smb_conf(make_settings(winpe_share_name="images]\n[x"))
    assert "OCTOPROV_WINPE_SHARE_NAME" in str(error.value)


@pytest.mark.skipif(shutil.which("testparm") is None, reason="testparm (Debian samba-common-bin) is not installed")
@pytest.mark.parametrize("options", [{}, {"samba_smb1": True, "winpe_share_user": "winpe",
                                          "winpe_share_password": "r3ad-0nly"}], ids=["guest", "smb1-account"])
@pytest.mark.parametrize("own_dir", [False, True], ids=["build-dirs", "samba-dir"])
def test_testparm_accepts_it(tmp_path, options, own_dir):
    path = tmp_path / "smb.conf"
    samba_dir = tmp_path / "samba"
    path.write_text(smb_conf(make_settings(**options), str(tmp_path), str(tmp_path),
                             str(samba_dir) if own_dir else None))
    for folder, mode in MADE_BEFOREHAND.items():
        (samba_dir / folder).mkdir(mode=mode, parents=True)
    result = subprocess.run(["testparm", "-s", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Unknown parameter" not in result.stderr and "Ignoring" not in result.stderr
    assert "name resolve order = bcast host" in result.stdout
    if own_dir:  # the build's folders (/run/samba, ...) exist only where Samba has run; these exist for sure
        assert not [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))], \
            result.stderr


def test_the_module_prints_it(capsys, monkeypatch):
    monkeypatch.setenv("OCTOPROV_BOOT_SERVER_ADDRESS", "192.0.2.10")
    assert main(["--images-path", "/images", "--drivers-path", "/drivers"]) == 0
    out = capsys.readouterr().out
    assert "path = /images" in out and "path = /drivers" in out and "private dir" not in out
    assert main(["--images-path", "/images", "--drivers-path", "/drivers", "--samba-dir", "/srv/samba"]) == 0
    assert "private dir = /srv/samba/private" in capsys.readouterr().out
