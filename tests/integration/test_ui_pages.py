"""The web UI's pages as the server sends them (no browser): routes, headers, assets, no data."""

from __future__ import annotations

import re

import pytest

from octoprov.models import MAX_ID

PAGES = ["/ui/", "/ui/signin", "/ui/tasks/new", "/ui/tasks/7", "/ui/images", "/ui/drivers", "/ui/templates",
         "/ui/hypervisors", "/ui/machines", "/ui/nodes", "/ui/packages", "/ui/groups"]


@pytest.fixture(params=["sqlite"])
def database(request, settings):  # the pages touch no database: one backend is enough
    from octoprov import migrate
    from octoprov.db import Database

    db = Database(settings.effective_database_url)
    migrate.upgrade(db.engine)
    yield db
    db.dispose()


def test_the_root_leads_to_the_dashboard(anonymous):
    response = anonymous.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/ui/")


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_no_token_hold_no_data_and_forbid_foreign_scripts(anonymous, path):
    """The pages are shells: their scripts fetch everything from the API with the token."""
    response = anonymous.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = response.get_data(as_text=True)
    assert "<script>" not in html and " style=" not in html and "onclick" not in html  # nothing inline: CSP holds
    for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', html):
        assert anonymous.get(asset).status_code == 200, asset
    assert "http://" not in html and "https://" not in html  # no CDN


def test_every_control_of_the_task_form_is_named_by_its_api_path(anonymous):
    html = anonymous.get("/ui/tasks/new").get_data(as_text=True)
    names = set(re.findall(r'name="([^"]+)"', html))
    assert {"hostname", "templateId", "targetType", "hypervisorNodeId", "macAddress", "vm.cpu", "vm.memoryGb",
            "vm.generation", "vm.secureboot", "vm.network.vswitch", "vm.network.vlan", "vm.storagePath",
            "os.imageId", "os.imageIndex", "os.language", "os.timezone", "os.productKey", "os.adminPassword",
            "network.mode", "network.ip", "network.subnet", "network.gateway", "network.dns", "domain.join",
            "domain.name", "domain.ou", "domain.method", "domain.serviceAccount.username",
            "domain.serviceAccount.password", "postInstall.installAgent", "options.keepVmOnFailure"} <= names
    assert 'name="os.productKey" type="password"' in html and 'name="os.adminPassword" type="password"' in html
    assert '<option value="W. Europe Standard Time" selected>' in html


def test_task_ids_beyond_the_api_range_are_not_pages(anonymous):
    assert anonymous.get(f"/ui/tasks/{MAX_ID + 1}").status_code == 404
    assert anonymous.get("/ui/nothing").status_code == 404
