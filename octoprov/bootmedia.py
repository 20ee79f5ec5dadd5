"""The boot ISO of a Linux install by virtual media: what a BMC inserts as a virtual CD (Redfish
``InsertMedia``) instead of answering PXE. It holds the OS image's kernel and initrd, boot loader
configurations that start them at once with the task's kernel command line, and optional extra
files at its root (answer or seed files the installer reads from the CD).

Two boot paths, one command line:

* BIOS: El Torito no-emulation entry with ISOLINUX (Debian's ``isolinux`` and ``syslinux-common``),
  which reads ``/isolinux/isolinux.cfg``.
* UEFI, Secure Boot included: an El Torito EFI entry for a small FAT image whose removable-media
  loader ``\\EFI\\BOOT\\BOOTX64.EFI`` is Debian's shim (signed by Microsoft's UEFI CA), beside Debian's
  signed CD GRUB (``gcdx64.efi``), whose built-in configuration finds the CD by ``/.disk/info`` and
  reads ``/boot/grub/grub.cfg``. Under Secure Boot the kernel must be signed (the image's
  ``signed_kernel``); GRUB refuses any other.

The command line reaches the kernel unchanged by either path only if it is printable ASCII without
``"``, ``'`` or ``\\``: GRUB's ``linux`` command hands the kernel those characters escaped with a
backslash (and wraps a word holding a space in double quotes) while ISOLINUX passes them as they are,
so they are refused, as are control characters (a newline ends a configuration line), ``initrd=``
(both loaders load the ISO's own initrd; ISOLINUX and the kernel's EFI stub would act on another) and
a line longer than the kernel keeps. Each word goes to GRUB single-quoted (``grub_word``), so ``$``,
``;`` or ``#`` stay literal.

The same inputs give the same bytes (fixed dates, serial numbers and layout), so an ISO can be cached
by a digest of its inputs. An ISO is written under a temporary name and renamed into place: a
half-written one is never served.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pycdlib

from octoprov.errors import PermanentError
from octoprov.netboot.grub import SHIM, SIGNED_SOURCES, grub_word

VOLUME_LABEL = "OCTOPROV_BOOT"
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")  # Debian's isolinux
LDLINUX_C32 = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")  # syslinux-common: ISOLINUX's second stage
SIGNED_SHIM = SIGNED_SOURCES[SHIM]  # under Settings.signed_boot_dir
SIGNED_CD_GRUB = "grub/x86_64-efi-signed/gcdx64.efi.signed"  # grub-efi-amd64-signed: GRUB for CDs
KERNEL, INITRD = "/boot/vmlinuz", "/boot/initrd.img"
# 1 January 2020 UTC: the date of every record (ISO 9660 and FAT), for reproducible output
SOURCE_DATE_EPOCH = 1577836800
# x86 Linux keeps 2047 bytes of command line; the loaders put BOOT_IMAGE=/boot/vmlinuz before it and
# ISOLINUX initrd=/boot/initrd.img after it
CMDLINE_MAX = 2047 - len(f"BOOT_IMAGE={KERNEL} ") - len(f" initrd={INITRD}")
_NOT_CARRIED = re.compile(r"""[^\x20-\x7e]|["'\\]""")
_LABEL = re.compile(r"[A-Z0-9_]{1,32}")
_FILE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_NOT_D_CHARACTER = re.compile(r"[^A-Z0-9_]")
_OWN_PATHS = {"/ISOLINUX": "isolinux/", "/BOOT": "boot/", "/_DISK": ".disk/"}  # ISO 9660 path: Rock Ridge name
_CLOCK = threading.Lock()


class UnbootableMedia(PermanentError):
    """The boot ISO cannot be built as asked: a command line or file the media cannot carry, or a
    boot loader file missing on this server."""


@dataclass(frozen=True)
class _IsoFile:
    """One file on the ISO: its ISO 9660 path (d-characters, what ISOLINUX may read) and its Rock
    Ridge name (what GRUB and Linux read)."""

    iso_path: str
    rr_name: str


def linux_boot_iso(out: Path, kernel: Path, initrd: Path, cmdline: str, *, signed_boot_dir: Path | None,
                   files: Mapping[str, bytes] | None = None, label: str = VOLUME_LABEL) -> Path:
    """Write the boot ISO to ``out`` (atomically) and return ``out``.

    ``signed_boot_dir`` is ``Settings.signed_boot_dir``: with it the ISO boots BIOS and UEFI (Secure
    Boot too), and its shim and CD GRUB must be there; ``None`` builds a BIOS-only ISO, which UEFI
    firmware will not boot. ``files`` maps relative POSIX paths (letters, digits, ``._-``) to
    contents, written from the ISO's root. The kernel and initrd are streamed, never read whole.
    Raises ``UnbootableMedia`` for what the ISO cannot carry or boot files that are missing.
    """
    words = kernel_words(cmdline)
    if not _LABEL.fullmatch(label):
        raise UnbootableMedia(f"volume label {label!r}: 1 to 32 of A-Z, 0-9 and _ (ISO 9660 d-characters)")
    folders, extra = _extra_files(files or {})
    loaders = [ISOLINUX_BIN, LDLINUX_C32]
    if signed_boot_dir is not None:
        loaders += [signed_boot_dir / SIGNED_SHIM, signed_boot_dir / SIGNED_CD_GRUB]
    for path in (kernel, initrd, *loaders):
        if not path.is_file():
            raise UnbootableMedia(f"{path} is missing: {_remedy(path)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bootmedia-") as work:
        efi_image = None
        if signed_boot_dir is not None:
            efi_image = efi_boot_image(Path(work) / "efi.img", *loaders[2:])
        with _fixed_clock():
            iso = pycdlib.PyCdlib()
            iso.new(interchange_level=3, rock_ridge="1.09", vol_ident=label, app_ident_str="Octoprov")
            try:
                _lay_out(iso, kernel, initrd, words, efi_image)
                for folder in folders:
                    iso.add_directory(folder.iso_path, rr_name=folder.rr_name)
                for where, data in extra.items():
                    iso.add_fp(io.BytesIO(data), len(data), where.iso_path, rr_name=where.rr_name)
                _write_atomically(iso, out)
            finally:
                iso.close()
    return out


def kernel_words(cmdline: str) -> list[str]:
    """The command line's words, refused (``UnbootableMedia``) if ISOLINUX and GRUB would not both hand
    it to the kernel as written (see the module)."""
    bad = _NOT_CARRIED.search(cmdline)
    if bad:
        raise UnbootableMedia(f"kernel command line: {bad[0]!r} at position {bad.start()} cannot be carried "
                              "to the kernel by both ISOLINUX and GRUB (printable ASCII without quotes or "
                              "backslashes only)")
    words = cmdline.split()
    if words == ["-"]:
        raise UnbootableMedia("kernel command line: a lone '-' means 'no arguments' to ISOLINUX")
    initrds = [word for word in words if word.startswith("initrd=")]
    if initrds:
        raise UnbootableMedia(f"kernel command line: {initrds[0]!r}: the boot media loads its own initrd")
    if len(" ".join(words)) > CMDLINE_MAX:
        raise UnbootableMedia(f"kernel command line: {len(' '.join(words))} characters, at most {CMDLINE_MAX} "
                              "reach the kernel")
    return words


def isolinux_config(words: list[str]) -> str:
    """ISOLINUX boots the kernel at once; APPEND is the rest of its line, taken as written."""
    return "\n".join([
        "# Octoprov boot media: the installer's kernel, at once",
        "DEFAULT linux",
        "PROMPT 0",
        "TIMEOUT 0",
        "LABEL linux",
        f"  KERNEL {KERNEL}",
        f"  INITRD {INITRD}",
        *([f"  APPEND {' '.join(words)}"] if words else []),
        "",
    ])


def grub_config(words: list[str]) -> str:
    """The signed CD GRUB boots the kernel at once, each argument one single-quoted word."""
    return "\n".join([
        "# Octoprov boot media: the installer's kernel, at once",
        "set timeout=0",
        "echo 'Octoprov: loading the installer'",
        " ".join(["linux", KERNEL, *map(grub_word, words)]),
        f"initrd {INITRD}",
        "boot",
        "echo 'Octoprov: the installer could not be started'",
        "sleep 30",
        "",
    ])


def efi_boot_image(out: Path, shim: Path, grub: Path) -> Path:
    """A FAT image for the El Torito EFI entry: shim as the removable-media loader, the CD GRUB beside
    it as the ``grubx64.efi`` shim starts. Built with mtools; dated SOURCE_DATE_EPOCH, serial 0."""
    size_mib = (shim.stat().st_size + grub.stat().st_size + (512 << 10)) // (1 << 20) + 1
    with out.open("wb") as image:
        image.truncate(size_mib << 20)
    _mtools(["mformat", "-i", str(out), "-N", "0", "-v", "EFIBOOT", "::"],
            ["mmd", "-i", str(out), "::/EFI", "::/EFI/BOOT"],
            ["mcopy", "-i", str(out), str(shim), "::/EFI/BOOT/BOOTX64.EFI"],
            ["mcopy", "-i", str(out), str(grub), "::/EFI/BOOT/grubx64.efi"])
    return out


def answer_floppy(out: Path, files: Mapping[str, bytes], label: str = "OCTOPROV") -> Path:
    """A 1.44 MB FAT floppy image with ``files`` at its root (Windows Setup reads Autounattend.xml from the
    root of any removable drive: a BMC's virtual floppy or USB stick). Written atomically."""
    part = out.with_name(out.name + ".part")
    with tempfile.TemporaryDirectory() as folder:
        _mtools(["mformat", "-i", str(part), "-C", "-f", "1440", "-N", "0", "-v", label, "::"])
        for name, data in files.items():
            source = Path(folder) / name
            source.write_bytes(data)
            _mtools(["mcopy", "-i", str(part), str(source), f"::/{name}"])
    part.replace(out)
    return out


def _mtools(*commands: list[str]) -> None:
    """mtools commands on a FAT image file (no loop device, no mount), dated SOURCE_DATE_EPOCH."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC",
                   "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    for argv in commands:
        if shutil.which(argv[0]) is None:
            raise UnbootableMedia(f"{argv[0]} is not installed (Debian's mtools): no FAT image")
        done = subprocess.run(argv, capture_output=True, text=True, env=environment, timeout=60, check=False)
        if done.returncode:
            raise UnbootableMedia(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def _lay_out(iso: pycdlib.PyCdlib, kernel: Path, initrd: Path, words: list[str], efi_image: Path | None) -> None:
    """The boot loaders, their configurations, the kernel and the initrd, and the El Torito catalog."""
    for iso_path, rr_name in (("/ISOLINUX", "isolinux"), ("/BOOT", "boot"), ("/BOOT/GRUB", "grub"),
                              ("/_DISK", ".disk")):
        iso.add_directory(iso_path, rr_name=rr_name)
    iso.add_file(str(ISOLINUX_BIN), "/ISOLINUX/ISOLINUX.BIN;1", rr_name="isolinux.bin")
    iso.add_file(str(LDLINUX_C32), "/ISOLINUX/LDLINUX.C32;1", rr_name="ldlinux.c32")
    iso.add_file(str(kernel), "/BOOT/VMLINUZ;1", rr_name="vmlinuz")
    iso.add_file(str(initrd), "/BOOT/INITRD.IMG;1", rr_name="initrd.img")
    texts = {_IsoFile("/ISOLINUX/ISOLINUX.CFG;1", "isolinux.cfg"): isolinux_config(words),
             _IsoFile("/BOOT/GRUB/GRUB.CFG;1", "grub.cfg"): grub_config(words),
             _IsoFile("/_DISK/INFO;1", "info"): "Octoprov boot media\n"}  # what the CD GRUB searches for
    for where, text in texts.items():
        data = text.encode()
        iso.add_fp(io.BytesIO(data), len(data), where.iso_path, rr_name=where.rr_name)
    iso.add_eltorito("/ISOLINUX/ISOLINUX.BIN;1", "/ISOLINUX/BOOT.CAT;1", boot_load_size=4, boot_info_table=True)
    if efi_image is not None:
        iso.add_file(str(efi_image), "/BOOT/GRUB/EFI.IMG;1", rr_name="efi.img")
        iso.add_eltorito("/BOOT/GRUB/EFI.IMG;1", "/ISOLINUX/BOOT.CAT;1", efi=True, platform_id=0xEF)


def _extra_files(files: Mapping[str, bytes]) -> tuple[list[_IsoFile], dict[_IsoFile, bytes]]:
    """The extra files' folders (parents first) and the files by where they go, refusing names the ISO
    cannot tell apart or that would take the place of its own."""
    folders: dict[_IsoFile, None] = {}
    placed: dict[_IsoFile, bytes] = {}
    claimed = dict(_OWN_PATHS)  # ISO 9660 path, version left out: the name that has it
    for name in sorted(files):
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or not all(_FILE_NAME.fullmatch(part) and part not in (".", "..")
                                                         for part in parts):
            raise UnbootableMedia(f"extra file {name!r}: a relative path of letters, digits and ._- only")
        iso_path = ""
        for depth, part in enumerate(parts, 1):
            is_file = depth == len(parts)
            iso_path += "/" + _iso_identifier(part, file=is_file)
            claim = "/".join(parts[:depth]) + ("" if is_file else "/")
            holder = claimed.setdefault(iso_path.removesuffix(";1"), claim)
            if holder in _OWN_PATHS.values():
                raise UnbootableMedia(f"extra file {name!r}: its ISO 9660 name is the boot media's own {holder!r}")
            if holder != claim:
                raise UnbootableMedia(f"extra files {holder!r} and {claim!r} would have the same ISO 9660 name")
            if is_file:
                placed[_IsoFile(iso_path, part)] = files[name]
            else:
                folders[_IsoFile(iso_path, part)] = None
    return list(folders), placed


def _iso_identifier(name: str, *, file: bool) -> str:
    """An ISO 9660 level 3 identifier for a Rock Ridge name: upper case, d-characters, short enough."""
    if not file:
        return _NOT_D_CHARACTER.sub("_", name.upper())[:31]
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, extension = name, ""
    stem = _NOT_D_CHARACTER.sub("_", stem.upper())[:26]
    extension = _NOT_D_CHARACTER.sub("_", extension.upper())[:3]
    return f"{stem}.{extension};1" if extension else f"{stem};1"


def _write_atomically(iso: pycdlib.PyCdlib, out: Path) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            iso.write_fp(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remedy(path: Path) -> str:
    if path in (ISOLINUX_BIN, LDLINUX_C32):
        return "install Debian's isolinux and syslinux-common"
    if path.name.endswith(".efi.signed"):
        return ("set OCTOPROV_SIGNED_BOOT_DIR to the usr/lib holding Debian's shim-signed and "
                "grub-efi-amd64-signed (`make signed-boot`), or build a BIOS-only ISO")
    return "no such file"


class _FixedClock:
    """What pycdlib's modules see as ``time`` while an ISO is built: now is SOURCE_DATE_EPOCH, and
    local time is UTC, so no record depends on when or where the ISO was made."""

    def __getattr__(self, name: str) -> object:
        if name == "time":
            return lambda: float(SOURCE_DATE_EPOCH)
        return getattr(time, "gmtime" if name == "localtime" else name)


@contextmanager
def _fixed_clock() -> Iterator[None]:
    """pycdlib stamps records with ``time.time()`` in local time and has no option against it; its
    modules' ``time`` is swapped for the build (one build at a time in a process; another pycdlib
    user meanwhile merely gets the same fixed dates)."""
    modules = [pycdlib.pycdlib, pycdlib.headervd, pycdlib.dates]
    with _CLOCK:
        saved = [module.time for module in modules]
        for module in modules:
            setattr(module, "time", _FixedClock())  # noqa: B010 - pycdlib's modules, not ours
        try:
            yield
        finally:
            for module, original in zip(modules, saved, strict=True):
                setattr(module, "time", original)  # noqa: B010
