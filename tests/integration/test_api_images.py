"""Images: registering files in the images folder and streamed uploads."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

API = "/api/v1/provisioning/images"


def _put_file(settings, relative: str, data: bytes):
    path = settings.effective_images_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_register_computes_size_and_checksum(client, settings):
    data = os.urandom(300_000)
    _put_file(settings, "windows/2025-std.wim", data)
    _put_file(settings, "windows/boot.wim", b"winpe")
    response = client.post(API, json={
        "name": "Windows Server 2025 Standard", "osType": "windows", "osVersion": "Windows Server 2025",
        "imagePath": "windows/2025-std.wim", "imageIndex": 2, "bootWimPath": "windows/boot.wim",
    })
    assert response.status_code == 201, response.json
    image = response.json
    assert image["sizeBytes"] == len(data)
    assert image["checksumSha256"] == hashlib.sha256(data).hexdigest()
    assert image["imagePath"] == "windows/2025-std.wim"
    assert image["bootWimPath"] == "windows/boot.wim"
    assert image["architecture"] == "x64"
    assert client.get(f"{API}/{image['id']}").json == image
    listing = client.get(API).json
    assert listing["total"] == 1 and listing["items"][0]["id"] == image["id"]


@pytest.mark.parametrize(("path", "field"), [
    ("../outside.wim", "imagePath"),
    ("/etc/passwd", "imagePath"),
    ("missing.wim", "imagePath"),
    ("link.wim", "imagePath"),
], ids=["dotdot", "absolute-outside", "missing", "symlink-escape"])
def test_register_refuses_paths_outside_or_missing(client, settings, tmp_path, path, field):
    outside = tmp_path / "outside.wim"
    outside.write_bytes(b"x")
    (settings.effective_images_dir / "link.wim").symlink_to(outside)
    response = client.post(API, json={"name": "x", "osType": "windows", "imagePath": path})
    assert response.status_code == 400
    assert field in response.json["errors"]
    assert client.get(API).json["total"] == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"osType": "windows", "imagePath": "a.wim"}, "name"),
    ({"name": "x", "osType": "solaris", "imagePath": "a.wim"}, "osType"),
    ({"name": "x", "osType": "windows", "imagePath": "a.wim", "imageIndex": 0}, "imageIndex"),
    ({"name": "x", "osType": "windows", "imagePath": "a.wim", "imageIndex": "2"}, "imageIndex"),
    ({"name": "x", "osType": "windows", "imagePath": "a.wim", "colour": "red"}, "colour"),
    ({"name": "x", "osType": "windows", "imagePath": "a.wim", "architecture": "sparc"}, "architecture"),
], ids=["no-name", "bad-os", "index-0", "index-string", "unknown-field", "bad-arch"])
def test_register_validation_names_the_field(client, settings, body, field):
    _put_file(settings, "a.wim", b"x")
    response = client.post(API, json=body)
    assert response.status_code == 400
    assert field in response.json["errors"], response.json


def test_upload_streams_to_disk_and_registers(client, settings):
    data = os.urandom(3 * 1024 * 1024 + 17)
    response = client.post(
        f"{API}/upload?name=Ubuntu&osType=linux&imagePath=linux/ubuntu.qcow2&sha256={hashlib.sha256(data).hexdigest()}",
        data=io.BytesIO(data), content_type="application/octet-stream",
    )
    assert response.status_code == 201, response.json
    assert response.json["sizeBytes"] == len(data)
    stored = settings.effective_images_dir / "linux/ubuntu.qcow2"
    assert stored.read_bytes() == data
    assert [p.name for p in stored.parent.iterdir()] == ["ubuntu.qcow2"]  # no partial file left


def test_upload_with_wrong_checksum_leaves_nothing(client, settings):
    response = client.post(
        f"{API}/upload?name=x&osType=linux&imagePath=x.img&sha256={'0' * 64}",
        data=b"some bytes", content_type="application/octet-stream",
    )
    assert response.status_code == 400 and "sha256" in response.json["errors"]
    assert list(settings.effective_images_dir.iterdir()) == []
    assert client.get(API).json["total"] == 0


def test_upload_refuses_to_overwrite(client, settings):
    _put_file(settings, "taken.img", b"old")
    response = client.post(f"{API}/upload?name=x&osType=linux&imagePath=taken.img", data=b"new",
                           content_type="application/octet-stream")
    assert response.status_code == 409
    assert (settings.effective_images_dir / "taken.img").read_bytes() == b"old"


def test_delete_keeps_file_and_refuses_when_template_uses_it(client, settings):
    _put_file(settings, "a.wim", b"x")
    image = client.post(API, json={"name": "x", "osType": "windows", "imagePath": "a.wim"}).json
    template = client.post("/api/v1/provisioning/templates", json={"name": "t", "imageId": image["id"]})
    assert template.status_code == 201, template.json
    assert client.delete(f"{API}/{image['id']}").status_code == 409
    assert client.delete(f"/api/v1/provisioning/templates/{template.json['id']}").status_code == 204
    assert client.delete(f"{API}/{image['id']}").status_code == 204
    assert client.get(f"{API}/{image['id']}").status_code == 404
    assert (settings.effective_images_dir / "a.wim").exists()
