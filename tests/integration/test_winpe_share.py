"""The WinPE share for real (issue 15, item 6): smbd serves the smb.conf Octoprov generates, smbclient mounts it
the way WinPE does.

Two servers, one per configuration variant, each in a network namespace of its own (tests/support/smbd.py):
the default (guest access, SMB1 off) and ``OCTOPROV_SAMBA_SMB1=true`` with one account. The image is random
bytes larger than one SMB2 read (smbd reads no WIM), so a short or reordered transfer shows.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import smbd
from tests.support.smbd import NT1_ONLY, SMB2_OR_LATER, ShareServer

IMAGE = "windows/server2025.wim"
IMAGE_BYTES = os.urandom(12 << 20)  # Samba's default SMB2 max read is 8 MiB: two reads at least
USER, PASSWORD = "winpe", "r3ad-0nly.pw"
NTLMV1 = "--option=client ntlmv2 auth=no"


@functools.cache
def _unusable_reason() -> str | None:
    return smbd.unusable_reason()


def _serve(tag: str, environ: dict[str, str]) -> Iterator[ShareServer]:
    reason = _unusable_reason()
    if reason:
        smbd.unusable(reason)
    with ShareServer(tag, {"OCTOPROV_WINPE_SHARE_SERVER": smbd.ADDRESS, **environ}) as server:
        image = server.images / IMAGE
        image.parent.mkdir(mode=0o755)
        image.write_bytes(IMAGE_BYTES)
        image.chmod(0o644)
        (server.drivers / "virtio").mkdir(mode=0o755)
        (server.drivers / "virtio" / "netkvm.inf").write_text("[Version]\n")
        (server.drivers / "virtio" / "netkvm.inf").chmod(0o644)
        outside = server.workdir / "outside.txt"  # readable, but not below a share
        outside.write_text("not for WinPE\n")
        outside.chmod(0o644)
        (server.images / "escape.txt").symlink_to(outside)
        (server.images / "inside.txt").write_text("for WinPE\n")
        (server.images / "inside.txt").chmod(0o644)
        (server.images / "alias.txt").symlink_to("inside.txt")  # a link that stays inside the share
        yield server


@pytest.fixture(scope="module")
def guest_share() -> Iterator[ShareServer]:
    """The defaults: guest access, SMB2 and later only."""
    yield from _serve("g", {})


@pytest.fixture(scope="module")
def smb1_account_share() -> Iterator[ShareServer]:
    """SMB1 switched on for old WinPE, and one account instead of guest access."""
    yield from _serve("a", {"OCTOPROV_SAMBA_SMB1": "true", "OCTOPROV_WINPE_SHARE_USER": USER,
                            "OCTOPROV_WINPE_SHARE_PASSWORD": PASSWORD})


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.stdout}{result.stderr}"


def _read_image(server: ShareServer, tmp_path: Path, *options: str, user: str = "guest", password: str = "") -> bytes:
    copy = tmp_path / "copy.wim"
    got = server.smbclient("images", *options, user=user, password=password,
                           commands=f'get "{IMAGE}" "{copy}"')
    assert got.returncode == 0, _output(got) + server.log()
    return copy.read_bytes()


# -- the default: guest, SMB2 and later ------------------------------------------------------------------


def test_testparm_finds_nothing_and_samba_keeps_to_its_folder(guest_share: ShareServer) -> None:
    checked = subprocess.run(["testparm", "-s", str(guest_share.conf)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    complaints = [line for line in checked.stderr.splitlines()
                  if any(word in line.lower() for word in ("warning", "unknown", "ignoring", "error", "deprecated"))]
    assert not complaints
    assert guest_share.process is not None
    run = guest_share.samba_dir / "run"
    assert (run / "smbd.pid").read_text().split() == [str(guest_share.process.pid)]
    assert (guest_share.samba_dir / "private" / "secrets.tdb").is_file()


def test_only_the_smb_port_listens(guest_share: ShareServer) -> None:
    assert guest_share.listening_ports() == {445}, "no NetBIOS session service (139): WinPE uses 445"


def test_guest_lists_the_shares_and_reads_the_image_byte_identical(guest_share: ShareServer, tmp_path: Path) -> None:
    assert guest_share.shares(*SMB2_OR_LATER) == {"images", "drivers"}
    listed = guest_share.smbclient("images", *SMB2_OR_LATER, commands="ls windows/*")
    assert listed.returncode == 0, _output(listed)
    assert f"server2025.wim                      N {len(IMAGE_BYTES)}" in listed.stdout
    assert _read_image(guest_share, tmp_path, *SMB2_OR_LATER) == IMAGE_BYTES
    drivers = guest_share.smbclient("drivers", *SMB2_OR_LATER, commands="ls virtio/*")
    assert drivers.returncode == 0 and "netkvm.inf" in drivers.stdout, _output(drivers)


def test_an_nt1_only_client_is_refused_without_smb1(guest_share: ShareServer) -> None:
    refused = guest_share.smbclient("images", *NT1_ONLY, commands="ls")
    assert refused.returncode != 0
    assert "protocol negotiation failed" in _output(refused), _output(refused)


def test_a_symlink_out_of_the_share_is_not_followed(guest_share: ShareServer, tmp_path: Path) -> None:
    inside = guest_share.smbclient("images", *SMB2_OR_LATER, commands=f'get alias.txt "{tmp_path / "alias.txt"}"')
    assert inside.returncode == 0 and (tmp_path / "alias.txt").read_text() == "for WinPE\n", _output(inside)
    copy = tmp_path / "escaped.txt"
    got = guest_share.smbclient("images", *SMB2_OR_LATER, commands=f'get escape.txt "{copy}"')
    assert got.returncode != 0 and not copy.exists(), "wide links = no keeps WinPE inside the share"
    assert "NT_STATUS_OBJECT_NAME_NOT_FOUND" in _output(got) or "NT_STATUS_ACCESS_DENIED" in _output(got), _output(got)


# -- SMB1 on, one account ------------------------------------------------------------------------------


def test_the_account_lists_the_shares_and_reads_the_image_byte_identical(smb1_account_share: ShareServer,
                                                                         tmp_path: Path) -> None:
    assert smb1_account_share.shares(*SMB2_OR_LATER, user=USER, password=PASSWORD) == {"images", "drivers"}
    assert _read_image(smb1_account_share, tmp_path, *SMB2_OR_LATER, user=USER, password=PASSWORD) == IMAGE_BYTES
    assert (smb1_account_share.samba_dir / "private" / "passdb.tdb").is_file(), "the test's passdb, not the host's"


@pytest.mark.parametrize(("user", "password"), [("guest", ""), (USER, "wrong-password")], ids=["guest", "wrong"])
def test_the_account_mode_lets_nobody_else_in(smb1_account_share: ShareServer, user: str, password: str) -> None:
    refused = smb1_account_share.smbclient("images", *SMB2_OR_LATER, user=user, password=password, commands="ls")
    assert refused.returncode != 0
    assert "NT_STATUS_LOGON_FAILURE" in _output(refused), _output(refused)


@pytest.mark.parametrize("ntlm", [(), (NTLMV1,)], ids=["ntlmv2", "ntlmv1"])
def test_an_nt1_only_client_connects_with_smb1_enabled(smb1_account_share: ShareServer, tmp_path: Path,
                                                        ntlm: tuple[str, ...]) -> None:
    assert _read_image(smb1_account_share, tmp_path, *NT1_ONLY, *ntlm, user=USER, password=PASSWORD) == IMAGE_BYTES


# -- both ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["guest_share", "smb1_account_share"])
@pytest.mark.parametrize("share", ["images", "drivers"])
def test_writes_are_refused(request: pytest.FixtureRequest, tmp_path: Path, variant: str, share: str) -> None:
    server: ShareServer = request.getfixturevalue(variant)
    user, password = ("guest", "") if variant == "guest_share" else (USER, PASSWORD)
    upload = tmp_path / "upload.txt"
    upload.write_text("WinPE writes nothing\n")
    folder = server.images if share == "images" else server.drivers
    before = sorted(path.relative_to(folder) for path in folder.rglob("*"))
    put = server.smbclient(share, *SMB2_OR_LATER, user=user, password=password,
                           commands=f'put "{upload}" upload.txt')
    assert put.returncode != 0 and "NT_STATUS_ACCESS_DENIED" in _output(put), _output(put)
    existing = "windows/server2025.wim" if share == "images" else "virtio/netkvm.inf"
    for command in ("mkdir new", f"rename {existing.split('/')[0]} moved", f"del {existing}"):
        # smbclient's exit status tells only of the last command's transfer: the server's answer is the proof
        refused = server.smbclient(share, *SMB2_OR_LATER, user=user, password=password, commands=command)
        assert "NT_STATUS_ACCESS_DENIED" in _output(refused), f"{command}: {_output(refused)}"
    assert sorted(path.relative_to(folder) for path in folder.rglob("*")) == before
