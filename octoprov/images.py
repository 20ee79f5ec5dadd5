"""OS images: registering files already in the images folder, and streamed uploads.

Images are stored by path relative to the images folder, so the folder can be mounted
elsewhere (``/images`` in a container) without touching the database. WIMs are several
GB: uploads go to disk chunk by chunk, hashing on the way, and only a complete file is
renamed into place and registered.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol

from pydantic import Field, computed_field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from octoprov import qcow2, states
from octoprov.db import protocol_columns
from octoprov.errors import Conflict, InvalidRequest
from octoprov.lookup import fetch
from octoprov.models import Image, Task, Template
from octoprov.paths import LIBRARY_PATH_PATTERN, confined, relative_name
from octoprov.specs import Spec, Timestamp, View
from octoprov.targets import registry
from octoprov.wim import Edition, read_editions

if TYPE_CHECKING:
    from octoprov.taskspec import TaskSpec

# What may stand on a kernel command line that an iPXE script carries: no ${ expansion, no || or &&,
# no quotes or newlines (iPXE's script syntax has no quoting).
KERNEL_ARGS_PATTERN = r"^[A-Za-z0-9 =,./:_+@%-]*$"

OsType = Literal["windows", "linux"]
Architecture = Literal["x64", "arm64", "x86"]


class ImageSpec(Spec):
    """Register a file that is already in the images folder."""

    name: str = Field(min_length=1, max_length=255)
    os_type: OsType
    os_version: str | None = Field(default=None, max_length=100)
    architecture: Architecture = "x64"
    image_path: str = Field(
        min_length=1, max_length=500, pattern=LIBRARY_PATH_PATTERN, description="Path relative to the images folder"
    )
    image_index: int = Field(default=1, ge=1, le=1000, description="WIM index of the edition to install")
    boot_wim_path: str | None = Field(
        default=None, max_length=500, pattern=LIBRARY_PATH_PATTERN,
        description="WinPE boot.wim, relative; BCD and boot.sdi are looked for beside it or in ../Boot",
    )
    install_iso_path: str | None = Field(
        default=None, max_length=500, pattern=LIBRARY_PATH_PATTERN,
        description="Windows installation ISO, relative: what a bare-metal machine installing by virtual media "
        "boots from its BMC's virtual CD (Microsoft-signed: Secure Boot stays on)",
    )
    kernel_path: str | None = Field(
        default=None, max_length=500, pattern=LIBRARY_PATH_PATTERN, description="Linux installer kernel, relative"
    )
    initrd_path: str | None = Field(
        default=None, max_length=500, pattern=LIBRARY_PATH_PATTERN, description="Linux installer initrd, relative"
    )
    kernel_args: str | None = Field(
        default=None, max_length=1000, pattern=KERNEL_ARGS_PATTERN,
        description="Kernel command line for the installer (letters, digits, space and =,./:_+@%-)",
    )
    signed_kernel: bool = Field(
        default=True, description="The installer kernel is signed by its distribution (Debian, Ubuntu, RHEL...), so "
        "a machine that enforces Secure Boot installs through shim and GRUB with it on. False: such a machine installs "
        "with Secure Boot off, which Octoprov turns on before the installed OS first boots",
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 32 for c in value):
            raise ValueError("must not contain control characters")
        return value


class UploadSpec(ImageSpec):
    """Metadata of an upload; ``imagePath`` is where the file is written inside the images folder."""

    sha256: str | None = Field(default=None, pattern="^[0-9a-fA-F]{64}$", description="Expected checksum")


class ImageView(View):
    id: int
    name: str
    os_type: str
    os_version: str | None
    architecture: str
    image_path: str
    image_index: int
    boot_wim_path: str | None
    install_iso_path: str | None = None
    kernel_path: str | None = None
    initrd_path: str | None = None
    kernel_args: str | None = None
    signed_kernel: bool = True
    size_bytes: int | None
    checksum_sha256: str | None
    disk_format: str | None = None
    virtual_size_bytes: int | None = None
    editions: list[Edition] | None
    created_at: Timestamp
    updated_at: Timestamp

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented way; mypy cannot follow it
    @property
    def cloud_image(self) -> bool:
        """A Linux qcow2 image: KVM tasks boot it directly (copy-on-write overlay + cloud-init)."""
        return is_cloud_image(self)


def _file_in(root: Path, value: str, field: str) -> Path:
    try:
        path = confined(root, value)
    except ValueError as exc:
        raise InvalidRequest({field: str(exc)}) from None
    if not path.is_file():
        raise InvalidRequest({field: f"no file {value!r} in the images folder"})
    return path


def sha256_of(path: Path, chunk: int = 1024 * 1024) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _new_image(root: Path, spec: ImageSpec, path: Path, size: int, checksum: str) -> Image:
    def optional_file(value: str | None, field: str) -> str | None:
        return relative_name(root, _file_in(root, value, field)) if value else None

    if (spec.kernel_path is None) != (spec.initrd_path is None):
        missing = "initrdPath" if spec.kernel_path else "kernelPath"
        raise InvalidRequest({missing: "give both kernelPath and initrdPath"})
    try:
        header = qcow2.read_header(path)
    except ValueError as exc:
        raise InvalidRequest({"imagePath": str(exc)}) from None
    return Image(
        name=spec.name, os_type=spec.os_type, os_version=spec.os_version, architecture=spec.architecture,
        image_path=relative_name(root, path), image_index=spec.image_index,
        boot_wim_path=optional_file(spec.boot_wim_path, "bootWimPath"),
        install_iso_path=optional_file(spec.install_iso_path, "installIsoPath"),
        kernel_path=optional_file(spec.kernel_path, "kernelPath"),
        initrd_path=optional_file(spec.initrd_path, "initrdPath"), kernel_args=spec.kernel_args,
        signed_kernel=spec.signed_kernel, size_bytes=size, checksum_sha256=checksum,
        disk_format="qcow2" if header else None,
        virtual_size_bytes=header.virtual_size if header else None,
    )


def register_image(session: Session, root: Path, spec: ImageSpec) -> Image:
    path = _file_in(root, spec.image_path, "imagePath")
    size, checksum = sha256_of(path)
    image = _new_image(root, spec, path, size, checksum)
    session.add(image)
    session.flush()
    return image


def upload_image(
    session: Session, root: Path, spec: UploadSpec, stream: IO[bytes], length: int | None, chunk: int
) -> Image:
    """Write ``stream`` to the images folder and register it; nothing remains if anything fails."""
    try:
        target = confined(root, spec.image_path)
    except ValueError as exc:
        raise InvalidRequest({"imagePath": str(exc)}) from None
    if target.exists():
        raise Conflict(f"imagePath: {spec.image_path!r} already exists in the images folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".upload-{secrets.token_hex(8)}.part")
    digest, size = hashlib.sha256(), 0
    try:
        with open(partial, "xb") as out:
            while block := stream.read(chunk):
                digest.update(block)
                out.write(block)
                size += len(block)
        if length is not None and size != length:
            raise InvalidRequest({"body": f"upload ended after {size} of {length} bytes"})
        checksum = digest.hexdigest()
        if spec.sha256 and spec.sha256.lower() != checksum:
            raise InvalidRequest({"sha256": f"upload has checksum {checksum}"})
        try:
            os.link(partial, target)  # fails instead of overwriting a file that appeared meanwhile
        except FileExistsError:
            raise Conflict(f"imagePath: {spec.image_path!r} already exists in the images folder") from None
        try:
            image = _new_image(root, spec, target, size, checksum)
            session.add(image)
            session.flush()
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return image
    finally:
        partial.unlink(missing_ok=True)


def get_image(session: Session, image_id: int) -> Image:
    return fetch(session, Image, image_id, "image")


def scan_image(session: Session, root: Path, image_id: int) -> Image:
    """Read the editions of a WIM image and store them on the image."""
    image = get_image(session, image_id)
    path = root / image.image_path
    if not path.is_file():
        raise Conflict(f"image {image_id}: its file {image.image_path!r} is no longer in the images folder")
    image.editions = [edition.to_json() for edition in read_editions(path)]
    if image.editions and image.image_index not in {e["index"] for e in image.editions}:
        image.image_index = image.editions[0]["index"]
    session.flush()
    return image


def delete_image(session: Session, image_id: int) -> None:
    """Forget an image (its file stays); refused while a template or an open task uses it."""
    image = get_image(session, image_id)
    template = session.scalar(select(Template.id).where(Template.image_id == image_id).limit(1))
    if template is not None:
        raise Conflict(f"image {image_id} is used by template {template}")
    for task_id, config in session.execute(
        select(Task.id, Task.config).where(Task.status.in_(states.ACTIVE))
    ):
        if (config or {}).get("os", {}).get("imageId") == image_id:
            raise Conflict(f"image {image_id} is used by task {task_id}")
    session.delete(image)


# --- cloud images ---------------------------------------------------------------------------------

GIB = 1024**3


@dataclass(frozen=True)
class CloudImage:
    """What a target needs of a cloud image: the file, its checksum (base volumes on a host are
    named by it, so tasks share one upload) and the virtual size the OS disk must reach."""

    image_id: int
    path: Path
    checksum_sha256: str
    size_bytes: int
    virtual_size_bytes: int


class ImageFormat(Protocol):
    """What tells a cloud image from the others: an ORM ``Image``, its API view, or a Core row of its columns."""

    @property
    def os_type(self) -> str: ...
    @property
    def disk_format(self) -> str | None: ...


class CloudImageColumns(ImageFormat, Protocol):
    """The image columns a ``CloudImage`` is made of (``load_context`` reads them as a Core row)."""

    @property
    def id(self) -> int: ...
    @property
    def image_path(self) -> str: ...
    @property
    def checksum_sha256(self) -> str | None: ...
    @property
    def size_bytes(self) -> int | None: ...
    @property
    def virtual_size_bytes(self) -> int | None: ...


CLOUD_IMAGE_COLUMNS = protocol_columns(CloudImageColumns)


def is_cloud_image(image: ImageFormat | None) -> bool:
    return image is not None and image.os_type == "linux" and image.disk_format == "qcow2"


def cloud_image(image: CloudImageColumns | None, root: Path) -> CloudImage | None:
    """The cloud image a task boots, or None when its image is not one."""
    if image is None or not is_cloud_image(image):
        return None
    return CloudImage(image.id, root / image.image_path, image.checksum_sha256 or "",
                      image.size_bytes or 0, image.virtual_size_bytes or 0)


def cloud_image_request_errors(image: CloudImageColumns | None, spec: TaskSpec) -> dict[str, str]:
    """What in a validated task request does not fit its image: a cloud image needs a target that
    boots cloud images and an OS disk of at least its virtual size that can hold an overlay; the
    fields only cloud-init reads are refused for other images rather than silently ignored."""
    errors = {}
    if not is_cloud_image(image):
        cloud_only = {"os.adminUsername": spec.os.admin_username, "os.sshAuthorizedKeys": spec.os.ssh_authorized_keys,
                      "postInstall.runCommands": spec.post_install.run_commands}
        for path, value in cloud_only.items():
            if value:
                errors[path] = "only cloud-image tasks use it (the image is not a Linux qcow2 image)"
        return errors
    assert image is not None  # is_cloud_image said so
    if spec.target_type not in registry.cloud_image_target_names():
        errors["os.imageId"] = (f"image {image.id} is a qcow2 cloud image; targetType {spec.target_type} "
                                f"cannot boot it (use kvm)")
    for index, disk in enumerate(spec.vm.disks if spec.vm else []):
        if disk.purpose != "os":
            continue
        needed = -(-(image.virtual_size_bytes or 0) // GIB)
        if disk.size_gb < needed:
            errors[f"vm.disks[{index}].sizeGb"] = (f"must be at least {needed}: the cloud image's disk is "
                                                   f"{image.virtual_size_bytes} bytes")
        if disk.type == "fixed":
            errors[f"vm.disks[{index}].type"] = "must be dynamic: a cloud image's OS disk is a copy-on-write overlay"
    return errors
