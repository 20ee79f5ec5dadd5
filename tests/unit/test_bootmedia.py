"""The virtual-media boot ISO (octoprov/bootmedia.py) read back with pycdlib: one El Torito catalog for
BIOS (ISOLINUX, no emulation, boot info table) and UEFI (a FAT image with shim and the CD GRUB), the
kernel, initrd and extra files where the configurations say, the command line word for word in both
configurations, and what the media cannot carry refused before anything is written. Stand-in boot
loader files keep it fast; tests/e2e/test_bootmedia_qemu.py boots the real ones.
"""

from __future__ import annotations

import io
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pycdlib
import pytest

from octoprov import bootmedia
from octoprov.bootmedia import SIGNED_CD_GRUB, SIGNED_SHIM, UnbootableMedia, linux_boot_iso

CMDLINE = "console=ttyS0,115200n8  auto=true ds=nocloud;s=/cdrom/nocloud/ x=$y#z&{w}"
WORDS = "console=ttyS0,115200n8 auto=true ds=nocloud;s=/cdrom/nocloud/ x=$y#z&{w}"
GRUB_ARGS = "'console=ttyS0,115200n8' 'auto=true' 'ds=nocloud;s=/cdrom/nocloud/' 'x=$y#z&{w}'"


@dataclass(frozen=True)
class Inputs:
    kernel: Path
    initrd: Path
    signed_boot_dir: Path
    isolinux: bytes
    shim: bytes
    grub: bytes

    def build(self, out: Path, cmdline: str = CMDLINE, **options) -> Path:
        options.setdefault("signed_boot_dir", self.signed_boot_dir)
        return linux_boot_iso(out, self.kernel, self.initrd, cmdline, **options)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def inputs(tmp_path, monkeypatch) -> Inputs:
    """Stand-ins for ISOLINUX, shim and GRUB (content is all the ISO builder looks at), a kernel and an initrd."""
    isolinux = bytes(range(256)) * 8  # 2 KiB; the boot info table goes to bytes 8 to 63 on the ISO
    monkeypatch.setattr(bootmedia, "ISOLINUX_BIN", _write(tmp_path / "loaders" / "isolinux.bin", isolinux))
    monkeypatch.setattr(bootmedia, "LDLINUX_C32", _write(tmp_path / "loaders" / "ldlinux.c32", b"ldlinux" * 99))
    signed = tmp_path / "signed-boot" / "usr" / "lib"
    shim, grub = b"MZ shim " * 5000, b"MZ cd grub " * 7000
    _write(signed / SIGNED_SHIM, shim)
    _write(signed / SIGNED_CD_GRUB, grub)
    return Inputs(_write(tmp_path / "vmlinuz", b"kernel " * 30000), _write(tmp_path / "initrd.gz", b"initrd " * 50000),
                  signed, isolinux, shim, grub)


@contextmanager
def opened(path: Path) -> Iterator[pycdlib.PyCdlib]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        yield iso
    finally:
        iso.close()


def read(iso: pycdlib.PyCdlib, rr_path: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, rr_path=rr_path)
    return out.getvalue()


def test_one_catalog_boots_bios_through_isolinux_and_uefi_through_a_fat_image(inputs, tmp_path):
    path = inputs.build(tmp_path / "media" / "boot.iso")
    assert path == tmp_path / "media" / "boot.iso" and path.stat().st_mode & 0o777 == 0o644
    with opened(path) as iso:
        catalog = iso.eltorito_boot_catalog
        bios, (uefi,) = catalog.initial_entry, catalog.sections
        assert catalog.validation_entry.platform_id == 0  # x86 BIOS
        assert (bios.boot_indicator, bios.boot_media_type, bios.sector_count) == (0x88, 0, 4)  # no emulation
        assert bios.load_rba == iso.get_record(rr_path="/isolinux/isolinux.bin").extent_location()
        assert uefi.platform_id == 0xEF and len(uefi.section_entries) == 1
        efi, efi_image = uefi.section_entries[0], iso.get_record(rr_path="/boot/grub/efi.img")
        assert (efi.boot_indicator, efi.boot_media_type) == (0x88, 0)
        assert efi.load_rba == efi_image.extent_location() and efi.sector_count == efi_image.get_data_length() // 512
        loader = read(iso, "/isolinux/isolinux.bin")
        assert struct.unpack_from("<II", loader, 8) == (16, bios.load_rba)  # boot info table: PVD, its own LBA
        assert loader[64:] == inputs.isolinux[64:]
        assert read(iso, "/boot/vmlinuz") == inputs.kernel.read_bytes()
        assert read(iso, "/boot/initrd.img") == inputs.initrd.read_bytes()
        assert read(iso, "/isolinux/ldlinux.c32") == bootmedia.LDLINUX_C32.read_bytes()
        assert read(iso, "/.disk/info") == b"Octoprov boot media\n"  # what the CD GRUB looks for
        assert iso.pvd.volume_identifier.rstrip() == b"OCTOPROV_BOOT"
        assert iso.get_record(iso_path="/_DISK/INFO;1").get_data_length() == 20  # ISOLINUX reads ISO 9660 names
        efi_bytes = read(iso, "/boot/grub/efi.img")
    assert bootmedia.ISOLINUX_BIN.read_bytes() == inputs.isolinux  # the table went to the ISO, not the source
    image = _write(tmp_path / "efi.img", efi_bytes)
    for name, expected in (("BOOTX64.EFI", inputs.shim), ("grubx64.efi", inputs.grub)):
        copied = subprocess.run(["mcopy", "-i", str(image), f"::/EFI/BOOT/{name}", "-"], capture_output=True,
                                check=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})
        assert copied.stdout == expected, name


def test_both_configurations_carry_the_command_line_word_for_word(inputs, tmp_path):
    with opened(inputs.build(tmp_path / "boot.iso")) as iso:
        isolinux_cfg = read(iso, "/isolinux/isolinux.cfg").decode()
        grub_cfg = read(iso, "/boot/grub/grub.cfg").decode()
    assert isolinux_cfg == ("# Octoprov boot media: the installer's kernel, at once\n"
                            "DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n"
                            "  KERNEL /boot/vmlinuz\n  INITRD /boot/initrd.img\n"
                            f"  APPEND {WORDS}\n")
    assert f"\nlinux /boot/vmlinuz {GRUB_ARGS}\ninitrd /boot/initrd.img\nboot\n" in grub_cfg
    assert "set timeout=0\n" in grub_cfg


@pytest.mark.parametrize(("cmdline", "why"), [
    ("console=ttyS0\nrm -rf /", r"'\\n' at position 13"),
    ("a=1\tb=2", r"'\\t' at position 3"),
    ("name=O'Brien", "\"'\" at position 6"),
    ('quoted="a b"', "'\"' at position 7"),
    ("path=C:\\boot", r"'\\\\' at position 7"),
    ("hostname=café", "'é' at position 12"),
    ("console=ttyS0 initrd=/other.img", "'initrd=/other.img': the boot media loads its own initrd"),
    (" - ", "a lone '-'"),
    ("x=" + "y" * bootmedia.CMDLINE_MAX, f"at most {bootmedia.CMDLINE_MAX}"),
])
def test_a_command_line_the_boot_loaders_cannot_carry_is_refused_before_anything_is_written(inputs, tmp_path,
                                                                                           cmdline, why):
    with pytest.raises(UnbootableMedia, match=why) as refused:
        inputs.build(tmp_path / "boot.iso", cmdline)
    assert refused.value.message.startswith("kernel command line: ")
    assert list(tmp_path.glob("*boot.iso*")) == []


def test_the_longest_command_line_that_fits_is_kept(inputs, tmp_path):
    longest = "x=" + "y" * (bootmedia.CMDLINE_MAX - 2)
    with opened(inputs.build(tmp_path / "boot.iso", longest)) as iso:
        assert f"APPEND {longest}\n" in read(iso, "/isolinux/isolinux.cfg").decode()


def test_extra_files_land_from_the_root_with_their_own_names(inputs, tmp_path):
    files = {"user-data": b"#cloud-config\n", "meta-data": b"", "nocloud/user-data": b"#cloud-config\nx: 1\n",
             "preseed.cfg": b"d-i debian-installer/locale string en_US\n"}
    with opened(inputs.build(tmp_path / "boot.iso", files=files, label="CIDATA")) as iso:
        assert {name: read(iso, "/" + name) for name in files} == files
        assert iso.get_record(iso_path="/NOCLOUD/USER_DATA;1").get_data_length() == len(files["nocloud/user-data"])
        assert iso.pvd.volume_identifier.rstrip() == b"CIDATA"


@pytest.mark.parametrize(("files", "why"), [
    ({"../etc/passwd": b""}, "a relative path of letters"),
    ({"/user-data": b""}, "a relative path of letters"),
    ({"": b""}, "a relative path of letters"),
    ({"seed data": b""}, "a relative path of letters"),
    ({"boot/extra.cfg": b""}, "the boot media's own 'boot/'"),
    ({"ISOLINUX": b""}, "the boot media's own 'isolinux/'"),
    ({".disk/id": b""}, "the boot media's own '.disk/'"),
    ({"user-data": b"", "user_data": b""}, "'user-data' and 'user_data' would have the same ISO 9660 name"),
    ({"seed": b"", "seed/meta-data": b""}, "'seed' and 'seed/' would have the same ISO 9660 name"),
])
def test_extra_files_the_iso_cannot_hold_apart_are_refused(inputs, tmp_path, files, why):
    with pytest.raises(UnbootableMedia, match=why):
        inputs.build(tmp_path / "boot.iso", files=files)


def test_without_signed_boot_files_the_iso_boots_bios_only_when_asked(inputs, tmp_path):
    with opened(inputs.build(tmp_path / "bios.iso", signed_boot_dir=None)) as iso:
        assert iso.eltorito_boot_catalog.sections == []
        assert [child.rock_ridge.name() for child in iso.list_children(rr_path="/boot/grub")][2:] == [b"grub.cfg"]
    with pytest.raises(UnbootableMedia, match=r"shimx64\.efi\.signed is missing: .*make signed-boot"):
        inputs.build(tmp_path / "uefi.iso", signed_boot_dir=tmp_path / "nowhere")
    with pytest.raises(UnbootableMedia, match="volume label 'cidata'"):
        inputs.build(tmp_path / "uefi.iso", label="cidata")


def test_the_same_inputs_give_the_same_bytes(inputs, tmp_path, monkeypatch):
    first = inputs.build(tmp_path / "first.iso").read_bytes()
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: local time would move every date
    time.tzset()
    try:
        second = inputs.build(tmp_path / "second.iso").read_bytes()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert first == second
    assert pycdlib.pycdlib.time is time and pycdlib.headervd.time is time  # pycdlib's clock is back
    with opened(tmp_path / "first.iso") as iso:
        assert iso.pvd.volume_creation_date.date_str.startswith(b"2020010100000000")


def test_a_failed_write_leaves_the_served_iso_as_it_was(inputs, tmp_path, monkeypatch):
    served = _write(tmp_path / "boot.iso", b"the ISO being served")

    def broken(self, outfp, *args, **kwargs):
        outfp.write(b"half an ISO")
        raise OSError("No space left on device")

    monkeypatch.setattr(pycdlib.PyCdlib, "write_fp", broken)
    with pytest.raises(OSError, match="No space left"):
        inputs.build(served)
    assert served.read_bytes() == b"the ISO being served"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["boot.iso", "initrd.gz", "loaders", "signed-boot",
                                                                 "vmlinuz"]
