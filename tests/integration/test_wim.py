"""WIM editions read from real multi-image WIMs built with wimlib, as Windows images carry them."""

from __future__ import annotations

import pytest

from octoprov.errors import Conflict
from octoprov.wim import parse_wim_xml
from tests.support.wim import EDITIONS, build_wim

IMAGES = "/api/v1/provisioning/images"
def test_scan_finds_exactly_the_three_editions(client, settings, tmp_path):
    wim = settings.effective_images_dir / "install.wim"
    build_wim(wim, tmp_path)
    image = client.post(IMAGES, json={"name": "WS2025", "osType": "windows", "imagePath": "install.wim",
                                      "imageIndex": 2}).json
    response = client.post(f"{IMAGES}/{image['id']}/scan")
    assert response.status_code == 200, response.json
    editions = response.json["editions"]
    assert [(e["index"], e["name"]) for e in editions] == [(i, n) for i, (n, _, _) in enumerate(EDITIONS, 1)]
    assert [e["editionId"] for e in editions] == [edition_id for _, edition_id, _ in EDITIONS]
    assert {e["architecture"] for e in editions} == {"x64"}
    assert {e["version"] for e in editions} == {"10.0.26100.1742"}
    assert editions[0]["languages"] == ["en-US"]
    assert response.json["imageIndex"] == 2
    assert client.get(f"{IMAGES}/{image['id']}").json["editions"] == editions


def test_task_image_index_is_checked_against_the_editions(client, settings, tmp_path):
    build_wim(settings.effective_images_dir / "install.wim", tmp_path)
    image = client.post(IMAGES, json={"name": "WS2025", "osType": "windows", "imagePath": "install.wim"}).json
    client.post(f"{IMAGES}/{image['id']}/scan")
    body = {"hostname": "BM-01", "targetType": "baremetal", "macAddress": "52:54:00:12:34:56",
            "os": {"imageId": image["id"], "imageIndex": 4}}
    refused = client.post("/api/v1/provisioning/tasks", json=body)
    assert refused.status_code == 400 and "os.imageIndex" in refused.json["errors"]
    body["os"]["imageIndex"] = 3
    assert client.post("/api/v1/provisioning/tasks", json=body).status_code == 201


def test_scan_of_a_file_that_is_not_a_wim(client, settings):
    (settings.effective_images_dir / "disk.iso").write_bytes(b"CD001" + b"\0" * 100)
    image = client.post(IMAGES, json={"name": "x", "osType": "linux", "imagePath": "disk.iso"}).json
    response = client.post(f"{IMAGES}/{image['id']}/scan")
    assert response.status_code == 409 and "not a readable WIM" in response.json["message"]
    assert client.post(f"{IMAGES}/4242/scan").status_code == 404


@pytest.mark.parametrize("payload", [
    b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><WIM><IMAGE INDEX="1"><NAME>&b;</NAME></IMAGE></WIM>',
    b"<WIM><IMAGE",
    b"\xff\xfe\x00\xd8",
], ids=["entities", "truncated", "bad-utf16"])
def test_hostile_or_broken_xml_is_a_conflict_not_a_crash(payload):
    with pytest.raises(Conflict):
        parse_wim_xml(payload)
