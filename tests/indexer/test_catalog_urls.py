"""URLs from an index are kept only when usable: http(s) packages, http(s) links for people."""

from __future__ import annotations

from pathlib import Path

import httpx

from openpitrix.repos.helm import parse_index
from tests.conftest import unique
from tests.helpers import create_repo, read_sse, wait_job
from tests.support.http_repo import RepoServer


def helm_yaml(entries: str) -> bytes:
    return ("apiVersion: v1\nentries:\n" + entries).encode()


def test_a_package_url_that_is_not_http_is_skipped_with_a_reason() -> None:
    body = helm_yaml(
        "  web:\n"
        "  - {name: web, version: 1.0.0, urls: ['file:///etc/passwd']}\n"
        "  - {name: web, version: 1.1.0, urls: ['oci://registry.example.org/web']}\n"
        "  - {name: web, version: 1.2.0, urls: ['FTP://mirror.example.org/web-1.2.0.tgz']}\n"
        "  - {name: web, version: 2.0.0, urls: ['web-2.0.0.tgz']}\n"
        "  - {name: web, version: 2.1.0, urls: ['HTTPS://cdn.example.org/web-2.1.0.tgz']}\n"
    )

    parsed = parse_index(body, "https://charts.example.org/stable")

    assert [(v.version, v.package_url) for v in parsed.charts["web"]] == [
        ("2.1.0", "https://cdn.example.org/web-2.1.0.tgz"),
        ("2.0.0", "https://charts.example.org/stable/web-2.0.0.tgz"),
    ]
    assert parsed.version_count == 2
    assert parsed.skipped == [
        "web[0]: package URL 'file:///etc/passwd' is not http(s)",
        "web[1]: package URL 'oci://registry.example.org/web' is not http(s)",
        "web[2]: package URL 'FTP://mirror.example.org/web-1.2.0.tgz' is not http(s)",
    ]


def test_links_shown_to_people_keep_only_http_values() -> None:
    body = helm_yaml(
        "  web:\n"
        "  - name: web\n"
        "    version: 1.0.0\n"
        "    icon: 'javascript:alert(document.cookie)'\n"
        "    home: 'data:text/html,<script>alert(1)</script>'\n"
        "    sources: ['https://github.com/example/web', 'javascript:alert(1)', 'file:///x',\n"
        "              'http://mirror.example.org/web']\n"
        "    maintainers:\n"
        "    - {name: Ann, email: ann@example.org, url: 'javascript:alert(1)'}\n"
        "    - {name: Bob, url: 'https://bob.example.org'}\n"
        "  db:\n"
        "  - name: db\n"
        "    version: 1.0.0\n"
        "    icon: 'https://example.org/db.png'\n"
        "    home: ' javascript:alert(1)'\n"
    )

    parsed = parse_index(body, "https://charts.example.org")

    web = parsed.charts["web"][0]
    assert (web.icon, web.home) == ("", "")
    assert web.sources == ["https://github.com/example/web", "http://mirror.example.org/web"]
    assert web.maintainers == [
        {"name": "Ann", "email": "ann@example.org"},
        {"name": "Bob", "url": "https://bob.example.org"},
    ]
    db = parsed.charts["db"][0]
    assert (db.icon, db.home) == ("https://example.org/db.png", "")
    # Dropping a link never drops the version.
    assert parsed.skipped == []


async def test_the_catalog_never_shows_a_javascript_icon_or_a_file_package(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "index.yaml").write_bytes(
        helm_yaml(
            "  web:\n"
            "  - {name: web, version: 1.0.0, urls: ['file:///etc/passwd']}\n"
            "  - name: web\n"
            "    version: 1.1.0\n"
            "    icon: 'javascript:alert(document.cookie)'\n"
            "    urls: ['web-1.1.0.tgz']\n"
        )
    )
    with RepoServer(root) as served:
        repo = await create_repo(client, unique(), served.url)
        job = await wait_job(client, repo["index_job_id"])

    assert job["status"] == "successful", job
    apps = (await client.get("/v1/apps", params={"repo_id": repo["repo_id"]})).json()["items"]
    assert [app["name"] for app in apps] == ["web"]
    assert apps[0]["icon"] == ""
    versions = (await client.get(f"/v1/apps/{apps[0]['app_id']}/versions")).json()["items"]
    assert [(v["version"], v["package_url"]) for v in versions] == [
        ("1.1.0", f"{served.url}/web-1.1.0.tgz")
    ]
    frames = await read_sse(client, f"/v1/jobs/{job['job_id']}/events", timeout=10)
    messages = [frame["data"].get("message", "") for frame in frames]
    assert "skipped entry: web[0]: package URL 'file:///etc/passwd' is not http(s)" in messages
