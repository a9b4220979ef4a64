"""The API docs work air-gapped: /docs and /redoc load their scripts and styles from this server,
never from a CDN."""

from __future__ import annotations

import re

import httpx
import pytest

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize(
    ("page", "kinds"),
    [("/docs", {"javascript", "css"}), ("/redoc", {"javascript"})],
)
async def test_docs_pages_use_only_assets_this_server_serves(
    anon: httpx.AsyncClient, page: str, kinds: set[str]
) -> None:
    resp = await anon.get(page)
    assert resp.status_code == 200
    urls = {a or b for a, b in ASSET.findall(resp.text)}
    assert urls, resp.text
    remote = {u for u in urls if "//" in u}
    assert not remote, remote
    served = set()
    for url in urls:
        asset = await anon.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
        served.add(asset.headers["content-type"].split(";")[0])
    for kind in kinds:
        assert any(kind in ctype for ctype in served), (kind, served)
