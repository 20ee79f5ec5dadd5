"""Linux cloud images on KVM: a qcow2 image recognised at registration, the requests that fit it,
the domain that boots it (overlay OS disk, seed CD-ROM, disk first) checked by ``virt-xml-validate``,
its volumes on libvirt's ``test:///default`` driver, the dry run's seed files, and a boot in QEMU of
a tiny image the tests build, reading the very seed the KVM driver uploaded.

What ``test:///default`` does not do: ``storageVolUpload`` (the driver has no streams; uploads are
captured here instead, and ``upload`` itself is checked against a fake stream), running a domain,
and reading a backing chain (an overlay's ``<backingStore>`` is stored as given). The QEMU boot
covers what a real host would do with those volumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pycdlib
import pytest
import yaml
from cryptography.fernet import Fernet

from octoprov import images, migrate, pipeline, tasks
from octoprov.cloudinit.metadata import instance_id
from octoprov.context import load_context
from octoprov.crypto import Vault
from octoprov.db import Database
from octoprov.errors import Cancelled, PermanentError, TransientError
from octoprov.models import Image, Node, Task
from octoprov.settings import Settings
from octoprov.targets.libvirt import cloudimage
from octoprov.targets.libvirt.domain_xml import LibvirtDomain, LibvirtVolume, domain_xml, with_cloud_image
from tests.support import tinycloud

libvirt = pytest.importorskip("libvirt")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

URI = "test:///default"
POOL = "default-pool"
API = "/api/v1/provisioning"
PASSWORD = "S3cret-for-cloud: 'x'"
GIB = 1024**3


def qcow2(path: Path, size: str = "2G", backing: Path | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        args += ["-b", str(backing), "-F", "qcow2"]
    subprocess.run([*args, str(path), size], check=True, capture_output=True, timeout=60)
    return path


def virt_xml_validate(tmp_path: Path, xml: str) -> ET.Element:
    if shutil.which("virt-xml-validate") is None or shutil.which("xmllint") is None:
        pytest.skip("virt-xml-validate (and the xmllint it runs) is not installed")
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    result = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return ET.fromstring(xml)  # noqa: S314


def read_iso(data: bytes) -> dict[str, str]:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        files = {}
        for name in ("user-data", "meta-data", "network-config"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            files[name] = out.getvalue().decode("utf-8")
        return files
    finally:
        iso.close()


# --- domain XML ------------------------------------------------------------------------------------

def spec(**changes) -> LibvirtDomain:
    values = {"name": "web01", "vcpus": 2, "memory_mib": 2048, "pool": POOL, "network": "default", "task_id": 42,
              "disks": [LibvirtVolume("web01-os", 10, "os"), LibvirtVolume("web01-data", 5, "data", "raw")], **changes}
    return with_cloud_image(LibvirtDomain(**values), "octoprov-image-abc")


@pytest.mark.parametrize(("generation", "virtio", "cdrom_dev"), [
    (2, True, "sda"), (1, True, "sda"), (2, False, "sdc"), (1, False, "sdc")],
    ids=["uefi-virtio", "bios-virtio", "uefi-sata", "bios-sata"])
def test_cloud_image_domain_boots_disk_with_seed_cdrom(tmp_path, generation, virtio, cdrom_dev):
    root = virt_xml_validate(tmp_path, domain_xml(spec(generation=generation, virtio_drivers=virtio,
                                                       secure_boot=generation == 2)))
    disks = root.findall("devices/disk[@device='disk']")
    assert [d.find("source").get("volume") for d in disks] == ["web01-os", "web01-data"]
    assert disks[0].find("driver").get("type") == "qcow2" and disks[0].find("boot").get("order") == "1"
    assert root.find("devices/interface/boot") is None  # no network boot at all
    [cdrom] = root.findall("devices/disk[@device='cdrom']")
    assert cdrom.get("type") == "volume" and cdrom.find("readonly") is not None
    assert cdrom.find("source").attrib == {"pool": POOL, "volume": "web01-cidata"}
    assert cdrom.find("target").attrib == {"dev": cdrom_dev, "bus": "sata"}
    assert cdrom.find("driver").get("type") == "raw" and cdrom.find("boot") is None


def test_cloud_image_needs_an_os_disk():
    with pytest.raises(ValueError, match="OS disk"):
        with_cloud_image(LibvirtDomain("web01", 1, 1024, POOL, "default", [LibvirtVolume("web01-data", 5)]), "base")


# --- images and requests through the API -------------------------------------------------------------

def register(client, settings, name: str, path: str = "cloud/debian.qcow2", os_type: str = "linux", **kwargs):
    if not (settings.effective_images_dir / path).exists():
        qcow2(settings.effective_images_dir / path, **kwargs)
    return client.post(f"{API}/images", json={"name": name, "osType": os_type, "imagePath": path})


def test_qcow2_image_is_recognised_as_cloud_image(client, settings):
    response = register(client, settings, "Debian 12 generic cloud", size="3G")
    assert response.status_code == 201, response.json
    image = response.json
    assert (image["diskFormat"], image["virtualSizeBytes"], image["cloudImage"]) == ("qcow2", 3 * GIB, True)
    assert client.get(f"{API}/images/{image['id']}").json == image
    (settings.effective_images_dir / "a.iso").write_bytes(b"\0" * 4096)
    other = client.post(f"{API}/images", json={"name": "installer", "osType": "linux", "imagePath": "a.iso"}).json
    assert (other["diskFormat"], other["virtualSizeBytes"], other["cloudImage"]) == (None, None, False)
    windows = register(client, settings, "Windows qcow2", os_type="windows").json
    assert windows["diskFormat"] == "qcow2" and windows["cloudImage"] is False  # no cloud-init path for Windows


def test_uploaded_qcow2_is_recognised(client, settings, tmp_path):
    data = qcow2(tmp_path / "up.qcow2", "1G").read_bytes()
    response = client.post(f"{API}/images/upload", data=data, content_type="application/octet-stream",
                           query_string={"name": "up", "osType": "linux", "imagePath": "cloud/up.qcow2"})
    assert response.status_code == 201, response.json
    assert response.json["cloudImage"] is True and response.json["virtualSizeBytes"] == GIB


@pytest.mark.parametrize(("header", "message"), [
    ("overlay", "backing file"), ("truncated", "truncated"), ("encrypted", "encrypted"), ("version", "version 9")])
def test_unusable_qcow2_is_refused_naming_the_field(client, settings, tmp_path, header, message):
    path = settings.effective_images_dir / "bad.qcow2"
    if header == "overlay":
        qcow2(path, backing=qcow2(settings.effective_images_dir / "base.qcow2"))
    else:
        data = bytearray(qcow2(tmp_path / "good.qcow2").read_bytes())
        if header == "truncated":
            data = data[:20]
        elif header == "encrypted":
            data[32:36] = (1).to_bytes(4, "big")
        else:
            data[4:8] = (9).to_bytes(4, "big")
        path.write_bytes(bytes(data))
    response = client.post(f"{API}/images", json={"name": "bad", "osType": "linux", "imagePath": "bad.qcow2"})
    assert response.status_code == 400, response.json
    assert message in response.json["errors"]["imagePath"]
    uploaded = client.post(f"{API}/images/upload", data=path.read_bytes(), content_type="application/octet-stream",
                           query_string={"name": "bad", "osType": "linux", "imagePath": "up/bad.qcow2"})
    assert uploaded.status_code == 400 and "imagePath" in uploaded.json["errors"]
    assert not (settings.effective_images_dir / "up" / "bad.qcow2").exists()  # nothing left behind


def kvm_request(image_id: int, node_id: int, **changes) -> dict:
    body = {"hostname": "web01", "targetType": "kvm", "hypervisorNodeId": node_id,
            "os": {"imageId": image_id, "adminPassword": PASSWORD, "sshAuthorizedKeys": []},
            "vm": {"cpu": 1, "memoryGb": 1, "generation": 1, "disks": [{"sizeGb": 10, "purpose": "os"}]},
            "network": {"mode": "dhcp"}, "postInstall": {"installAgent": False, "runCommands": ["echo ok"]}}
    for key, value in changes.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return body


def kvm_node(client, name="KVM", endpoint=URI) -> int:
    return client.post(f"{API}/hypervisors", json={"name": name, "kind": "kvm", "endpoint": endpoint}).json["id"]


@pytest.mark.parametrize(("changes", "field", "text"), [
    ({"vm": {"disks": [{"sizeGb": 10, "purpose": "data"}, {"sizeGb": 2, "purpose": "os"}]}},
     "vm.disks[1].sizeGb", "at least 3"),
    ({"vm": {"disks": [{"sizeGb": 10, "purpose": "os", "type": "fixed"}]}}, "vm.disks[0].type", "dynamic"),
    ({"os": {"sshAuthorizedKeys": ["ssh-ed25519 AAAA not-a-key"]}}, "os.sshAuthorizedKeys[0]", "key"),
    ({"os": {"adminUsername": "root"}}, "os.adminUsername", "system account"),
    ({"postInstall": {"runCommands": ["echo \0"]}}, "postInstall.runCommands[0]", "NUL"),
])
def test_cloud_image_request_errors_name_the_field(client, settings, changes, field, text):
    image = register(client, settings, "cloud", size="2560M").json["id"]
    response = client.post(f"{API}/tasks", json=kvm_request(image, kvm_node(client), **changes))
    assert response.status_code == 400, response.json
    assert text in response.json["errors"][field]


def test_cloud_image_needs_a_kvm_target(client, settings):
    image = register(client, settings, "cloud").json["id"]
    body = kvm_request(image, 0, targetType="baremetal", macAddress="52:54:00:00:00:01")
    del body["hypervisorNodeId"], body["vm"]
    response = client.post(f"{API}/tasks", json=body)
    assert response.status_code == 400 and "cloud image" in response.json["errors"]["os.imageId"]


def test_cloud_init_fields_refused_for_other_images(client, settings):
    (settings.effective_images_dir / "a.wim").write_bytes(b"wim")
    image = client.post(f"{API}/images", json={"name": "w", "osType": "windows", "imagePath": "a.wim"}).json["id"]
    body = kvm_request(image, kvm_node(client), hostname="WEB01", os={"adminUsername": "ops"})
    response = client.post(f"{API}/tasks", json=body)
    assert response.status_code == 400
    assert set(response.json["errors"]) == {"os.adminUsername", "postInstall.runCommands"}


def test_cloud_image_task_plan_and_dry_run(client, settings, tmp_path):
    image = register(client, settings, "cloud").json["id"]
    body = kvm_request(image, kvm_node(client))
    plan = client.post(f"{API}/tasks", query_string={"dryRun": "true"}, json=body)
    assert plan.status_code == 200, plan.json
    assert [(s["name"]) for s in plan.json["task"]["steps"]] == [
        "create_vm", "power_on", "first_boot", "os_install", "finish"]
    artifacts = plan.json["artifacts"]
    root = virt_xml_validate(tmp_path, artifacts["domain.xml"])
    assert root.find("devices/disk[@device='cdrom']/source").get("volume") == "web01-cidata"
    user_data = yaml.safe_load(artifacts["user-data"])
    assert user_data["hostname"] == "web01" and user_data["users"][0]["hashed_passwd"].startswith("$6$")
    assert PASSWORD not in json.dumps(plan.json)
    assert yaml.safe_load(artifacts["meta-data"])["local-hostname"] == "web01"
    network = yaml.safe_load(artifacts["network-config"])
    assert network["ethernets"]["eth0"]["match"]["macaddress"] == "52:54:00:00:00:00"
    assert "stands for the MAC" in json.loads(artifacts["plan.json"])["notes"][0]
    assert client.get(f"{API}/tasks").json["total"] == 0

    body["macAddress"] = "52:54:00:AB:CD:EF"
    body["hypervisorNodeId"] = kvm_node(client, "GONE", "qemu+unix:///system?socket=/nonexistent/sock")
    artifacts = client.post(f"{API}/tasks", query_string={"dryRun": "true"}, json=body).json["artifacts"]
    assert "domain.xml" not in artifacts  # the host did not answer: the seed files are written all the same
    assert yaml.safe_load(artifacts["network-config"])["ethernets"]["eth0"]["match"]["macaddress"] == \
        "52:54:00:ab:cd:ef"


# --- volumes and domain on libvirt's test driver --------------------------------------------------------

@dataclasses.dataclass
class Env:
    settings: Settings
    database: Database
    vault: Vault

    def image(self, name: str = "debian", size: str = "2G", source: Path | None = None) -> int:
        path = self.settings.effective_images_dir / "cloud" / f"{name}.qcow2"
        if source is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, path)
        else:
            qcow2(path, size)
        with self.database.session() as session:
            spec = images.ImageSpec(name=name, os_type="linux", image_path=f"cloud/{name}.qcow2")
            return images.register_image(session, self.settings.effective_images_dir, spec).id

    def node(self, options: dict | None = None) -> int:
        with self.database.session() as session:
            row = Node(name="KVM01", role="hypervisor", kind="kvm", endpoint=URI, options=options)
            session.add(row)
            session.flush()
            return row.id

    def task(self, image_id: int, node_id: int, **changes):
        with self.database.session() as session:
            task = tasks.create_task(session, self.vault, kvm_request(image_id, node_id, **changes))
            task_id = task.id
        with self.database.session() as session:
            return load_context(session, task_id, self.settings, self.database, self.vault)


@pytest.fixture
def env(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", secret_key=Fernet.generate_key().decode(),
                        public_url="http://127.0.0.1:8080")
    settings.ensure_dirs()
    database = Database(settings.effective_database_url)
    migrate.upgrade(database.engine)
    yield Env(settings, database, Vault.from_settings(settings))
    database.dispose()


@pytest.fixture
def uploads(monkeypatch):
    """What would have been streamed into each volume (the test driver has no upload)."""
    sent: dict[str, bytes] = {}

    def capture(_conn, volume, source, length, _between=None):
        sent[volume.name()] = source.read(length)

    monkeypatch.setattr(cloudimage, "upload", capture)
    return sent


def pool_of(conn):
    return conn.storagePoolLookupByName(POOL)


def volume_names(conn) -> list[str]:
    return sorted(v.name() for v in pool_of(conn).listAllVolumes())


def test_create_machine_from_cloud_image(tmp_path, env, conn, target, uploads):
    image_id = env.image()
    ctx = env.task(image_id, env.node())
    base = cloudimage.base_volume_name(ctx.cloud_image.checksum_sha256)
    machine = target.compute.create_machine(ctx)
    assert volume_names(conn) == sorted([base, base + ".ready", "web01-os", "web01-cidata"])
    assert uploads[base] == ctx.cloud_image.path.read_bytes()
    assert hashlib.sha256(uploads[base]).hexdigest() == ctx.cloud_image.checksum_sha256

    overlay = ET.fromstring(pool_of(conn).storageVolLookupByName("web01-os").XMLDesc(0))  # noqa: S314
    assert int(overlay.findtext("capacity")) == 10 * GIB
    assert overlay.find("target/format").get("type") == "qcow2"
    assert overlay.findtext("backingStore/path") == pool_of(conn).storageVolLookupByName(base).path()
    assert overlay.find("backingStore/format").get("type") == "qcow2"

    files = read_iso(uploads["web01-cidata"])
    user_data = yaml.safe_load(files["user-data"])
    settings = json.loads(next(f["content"] for f in user_data["write_files"] if f["path"].endswith(".json")))
    assert settings == {"url": ctx.callback_url, "taskId": ctx.task_id, "token": ctx.callback_token(),
                        "commands": ["echo ok"]}
    assert PASSWORD not in files["user-data"]
    assert yaml.safe_load(files["meta-data"])["instance-id"] == instance_id(ctx.task_id)
    network = yaml.safe_load(files["network-config"])["ethernets"]["eth0"]
    assert network["match"]["macaddress"] == machine.mac_address and network["dhcp4"] is True

    dom = conn.lookupByName("web01")
    root = virt_xml_validate(tmp_path, dom.XMLDesc(0))
    assert root.find("devices/disk[@device='cdrom']/source").get("volume") == "web01-cidata"
    assert root.find("devices/disk[@device='cdrom']/readonly") is not None
    assert root.find("devices/disk[@device='disk']/boot").get("order") == "1"
    assert root.find("devices/interface/boot") is None
    assert target.power.power_on(ctx) == "Powered on; booting from disk"


def test_redelivered_step_creates_nothing_twice(env, conn, target, uploads):
    ctx = env.task(env.image(), env.node())
    first = target.compute.create_machine(ctx)
    before = volume_names(conn)
    uploads.clear()
    again = target.compute.create_machine(ctx)
    assert again.detail.startswith("Adopted") and (again.ref, again.mac_address) == (first.ref, first.mac_address)
    assert volume_names(conn) == before
    assert list(uploads) == ["web01-cidata"]  # the seed is rewritten (its upload may have been cut); no image upload
    assert [d.name() for d in conn.listAllDomains()].count("web01") == 1


def test_tasks_share_the_base_and_rollback_keeps_it(env, conn, target, uploads):
    image_id, node_id = env.image(), env.node()
    first = env.task(image_id, node_id)
    second = env.task(image_id, node_id, hostname="web02")
    target.compute.create_machine(first)
    uploads.clear()
    target.compute.create_machine(second)
    base = cloudimage.base_volume_name(first.cloud_image.checksum_sha256)
    assert list(uploads) == ["web02-cidata"]  # the image was uploaded once
    assert target.compute.destroy_machine(first) == "Removed web01 and 2 volumes"
    assert volume_names(conn) == sorted([base, base + ".ready", "web02-os", "web02-cidata"])
    target.compute.destroy_machine(second)
    assert volume_names(conn) == sorted([base, base + ".ready"])


def test_os_disk_smaller_than_the_image_creates_nothing(env, conn, target, uploads):
    ctx = env.task(env.image(), env.node())
    bigger = dataclasses.replace(ctx.cloud_image, virtual_size_bytes=11 * GIB)
    with pytest.raises(PermanentError, match="smaller than cloud image"):
        target.compute.create_machine(dataclasses.replace(ctx, cloud_image=bigger))
    assert volume_names(conn) == [] and uploads == {}
    assert "web01" not in [d.name() for d in conn.listAllDomains()]


def test_base_being_uploaded_elsewhere_is_waited_for(env, conn, target, uploads):
    ctx = env.task(env.image(), env.node())
    base = cloudimage.base_volume_name(ctx.cloud_image.checksum_sha256)
    pool_of(conn).createXML(cloudimage.volume_xml(base, 1024, "raw"), 0)  # no .ready: an upload in progress
    with pytest.raises(TransientError, match="being uploaded"):
        target.compute.create_machine(ctx)
    assert volume_names(conn) == [base] and uploads == {}


def test_failed_upload_leaves_no_base(env, conn, target, monkeypatch):
    ctx = env.task(env.image(), env.node())

    def broken(*_args):
        raise OSError("connection reset")

    monkeypatch.setattr(cloudimage, "upload", broken)
    with pytest.raises(OSError, match="reset"):
        target.compute.create_machine(ctx)
    assert volume_names(conn) == []


def test_image_missing_from_the_worker(env, conn, target, uploads):
    ctx = env.task(env.image(), env.node())
    ctx.cloud_image.path.unlink()
    with pytest.raises(PermanentError, match="images folder"):
        target.compute.create_machine(ctx)
    assert volume_names(conn) == []


def test_pool_of_block_devices_is_refused(env, conn, target, uploads):
    conn.storagePoolCreateXML("<pool type='logical'><name>vg0</name><source><name>vg0</name></source>"
                              "<target><path>/dev/vg0</path></target></pool>", 0)
    ctx = env.task(env.image(), env.node({"kvm": {"storagePool": "vg0"}}))
    with pytest.raises(PermanentError, match="pool vg0 is of type logical"):
        target.compute.create_machine(ctx)
    assert uploads == {} and "web01" not in [d.name() for d in conn.listAllDomains()]


def test_pxe_task_is_unchanged(env, conn, target):
    (env.settings.effective_images_dir / "a.iso").write_bytes(b"\0" * 4096)
    with env.database.session() as session:
        image_id = images.register_image(session, env.settings.effective_images_dir, images.ImageSpec(
            name="installer", os_type="linux", image_path="a.iso", kernel_path="a.iso", initrd_path="a.iso")).id
    ctx = env.task(image_id, env.node(), postInstall={"runCommands": []})
    assert ctx.cloud_image is None
    target.compute.create_machine(ctx)
    assert volume_names(conn) == ["web01-os"]
    root = ET.fromstring(conn.lookupByName("web01").XMLDesc(0))  # noqa: S314
    assert root.find("devices/disk[@device='cdrom']") is None
    assert root.find("devices/interface/boot").get("order") == "1"


# --- the upload stream itself -----------------------------------------------------------------------------

class FakeStream:
    def __init__(self, take: int = 3, fail_at: int | None = None):
        self.take, self.fail_at = take, fail_at
        self.data, self.events = b"", []

    def send(self, block: bytes) -> int:
        if self.fail_at is not None and len(self.data) >= self.fail_at:
            raise libvirt.libvirtError("stream broke")
        taken = block[: self.take]  # a local stream may accept less than it is given
        self.data += taken
        return len(taken)

    def finish(self):
        self.events.append("finish")

    def abort(self):
        self.events.append("abort")


class FakeConn:
    def __init__(self, stream):
        self.stream = stream

    def newStream(self, flags):
        return self.stream


class FakeVolume:
    def __init__(self):
        self.calls = []

    def upload(self, stream, offset, length, flags):
        self.calls.append((offset, length, flags))


def test_upload_sends_everything_then_finishes(monkeypatch):
    monkeypatch.setattr(cloudimage, "CHUNK", 7)
    stream, volume = FakeStream(), FakeVolume()
    data = bytes(range(50))
    cloudimage.upload(FakeConn(stream), volume, io.BytesIO(data + b"extra"), len(data))
    assert stream.data == data and stream.events == ["finish"] and volume.calls == [(0, 50, 0)]


def test_upload_stops_when_the_task_is_cancelled(monkeypatch):
    monkeypatch.setattr(cloudimage, "CHUNK", 4)
    stream, asked = FakeStream(take=4), []

    def between():
        asked.append(len(stream.data))
        if len(asked) == 2:
            raise Cancelled("task 1 is cancelled")

    with pytest.raises(Cancelled):
        cloudimage.upload(FakeConn(stream), FakeVolume(), io.BytesIO(bytes(1000)), 1000, between)
    assert asked == [60, 124] and stream.events == ["abort"]  # every 16 chunks of 4 bytes


def test_upload_aborts_on_a_short_file_or_a_broken_stream():
    stream = FakeStream()
    with pytest.raises(PermanentError, match="10 bytes short"):
        cloudimage.upload(FakeConn(stream), FakeVolume(), io.BytesIO(b"x" * 10), 20)
    assert stream.events == ["abort"]
    stream = FakeStream(fail_at=4)
    with pytest.raises(libvirt.libvirtError):
        cloudimage.upload(FakeConn(stream), FakeVolume(), io.BytesIO(b"x" * 10), 10)
    assert stream.events == ["abort"]


# --- booting it ----------------------------------------------------------------------------------------

BOOT_TIMEOUT = 120  # seconds; about 6 s measured (TCG, 2 cores)


def _unusable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"cloud-image boot test unusable in CI: {reason}")
    pytest.skip(reason)


def test_cloud_image_boots_and_reads_its_seed_in_qemu(tmp_path, env, conn, target, uploads):
    """The tiny image registered like any cloud image; the KVM driver's base upload, overlay and
    seed turned into files as a directory pool holds them; QEMU with no network device at all boots
    the overlay as libvirt would run this domain (generation 1: pc machine, SeaBIOS, VirtIO disk,
    SATA CD-ROM), and the machine prints the seed's files on its serial console."""
    missing = tinycloud.missing_tools() + [t for t in ("qemu-system-x86_64",) if shutil.which(t) is None]
    if missing:
        _unusable(f"missing: {', '.join(missing)}")
    built = tinycloud.build()
    ctx = env.task(env.image("tiny", source=built.image), env.node(), vm={"disks": [{"sizeGb": 1, "purpose": "os"}]})
    assert ctx.cloud_image.virtual_size_bytes == built.raw_size
    target.compute.create_machine(ctx)

    pool_dir = tmp_path / "pool"  # the pool's volumes as files
    base_name = cloudimage.base_volume_name(ctx.cloud_image.checksum_sha256)
    base = pool_dir / base_name
    pool_dir.mkdir()
    base.write_bytes(uploads[base_name])
    base_digest = hashlib.sha256(base.read_bytes()).hexdigest()
    overlay_xml = ET.fromstring(pool_of(conn).storageVolLookupByName("web01-os").XMLDesc(0))  # noqa: S314
    overlay = qcow2(pool_dir / "web01-os", overlay_xml.findtext("capacity"), backing=base)
    seed = pool_dir / "web01-cidata"
    seed.write_bytes(uploads["web01-cidata"])
    domain = ET.fromstring(conn.lookupByName("web01").XMLDesc(0))  # noqa: S314
    assert domain.find("os/type").get("machine") == "pc" and domain.find("os/loader") is None

    log = tmp_path / "serial.log"
    command = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "pc", "-m", "256", "-nographic",
               "-no-user-config", "-nodefaults", "-nic", "none", "-no-reboot", "-serial", f"file:{log}",
               "-drive", f"if=none,id=os,file={overlay},format=qcow2",
               "-device", "virtio-blk-pci,drive=os,bootindex=1",
               "-device", "ich9-ahci,id=sata0",
               "-drive", f"if=none,id=seed,file={seed},format=raw,media=cdrom,readonly=on",
               "-device", "ide-cd,drive=seed,bus=sata0.0"]
    started = time.monotonic()
    qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while time.monotonic() - started < BOOT_TIMEOUT and qemu.poll() is None:
            if log.exists() and f"{tinycloud.MARKER}: powering off" in log.read_text(errors="replace"):
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        console = log.read_bytes().decode("utf-8", errors="replace") if log.exists() else ""
        assert f"{tinycloud.MARKER}: powering off" in console, f"no seed read after {elapsed:.0f} s:\n{console[-3000:]}"
    finally:
        if qemu.poll() is None:
            os.kill(qemu.pid, signal.SIGKILL)
        qemu.wait(timeout=30)
    print(f"cloud image booted and read its seed in {elapsed:.1f} s")

    printed, sums, device = tinycloud.seed_from_console(console)
    expected = read_iso(uploads["web01-cidata"])
    assert device == "/dev/sr0"
    assert sums == {name: hashlib.sha256(text.encode()).hexdigest() for name, text in expected.items()}
    assert printed == expected
    user_data = yaml.safe_load(printed["user-data"])
    assert user_data["hostname"] == "web01" and printed["user-data"].startswith("#cloud-config\n")
    assert yaml.safe_load(printed["meta-data"])["instance-id"] == instance_id(ctx.task_id)
    assert yaml.safe_load(printed["network-config"])["version"] == 2
    assert hashlib.sha256(base.read_bytes()).hexdigest() == base_digest  # copy-on-write: the base is untouched
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-U", str(overlay)], check=True,
                                     capture_output=True, text=True, timeout=60).stdout)
    assert info["backing-filename"] == str(base) and info["virtual-size"] == GIB


def test_callbacks_move_a_cloud_image_task_to_its_end(env):
    """The machine's two reports, in the order the runner posts them, each complete their wait step."""
    ctx = env.task(env.image(), env.node())
    token = ctx.callback_token()
    with env.database.session() as session:
        for name in ("create_vm", "power_on"):
            assert pipeline.claim(session, ctx.task_id, name, 60).step == name
            pipeline.complete(session, env.settings, ctx.task_id, name, "done")
        assert session.get(Task, ctx.task_id).status == "booting"
        early = pipeline.handle_callback(session, env.settings, env.vault, ctx.task_id, token, "os_installed", "ok",
                                         None)
        assert early.reason == "out of order"
        booted = pipeline.handle_callback(session, env.settings, env.vault, ctx.task_id, token, "first_boot", "ok",
                                          "cloud-init started")
        assert booted.accepted and session.get(Task, ctx.task_id).status == "installing"
        done = pipeline.handle_callback(session, env.settings, env.vault, ctx.task_id, token, "os_installed", "ok",
                                        "configured")
        assert done.resume == ["finish"]


def test_image_row_keeps_the_header_facts(env):
    image_id = env.image(size="1536M")
    with env.database.session() as session:
        row = session.get(Image, image_id)
        assert (row.disk_format, row.virtual_size_bytes) == ("qcow2", 1536 * 1024**2)
