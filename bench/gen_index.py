"""Write a synthetic Helm index.yaml of N charts x M versions (about 1 KB per version)."""

from __future__ import annotations

import hashlib
from pathlib import Path

WORDS = ["metrics", "cache", "proxy", "database", "queue", "search", "storage", "web", "auth", "ml"]


def _entry(chart: str, i: int, j: int) -> str:
    version = f"{1 + j // 5}.{j % 5}.{(i + j) % 7}"
    app_version = f"{2 + j}.{i % 30}.0"
    kw1, kw2 = WORDS[i % len(WORDS)], WORDS[(i + j + 3) % len(WORDS)]
    digest = hashlib.sha256(f"{chart}-{version}".encode()).hexdigest()
    return f"""  - apiVersion: v2
    name: {chart}
    version: {version}
    appVersion: "{app_version}"
    description: {chart} chart for {kw1} and {kw2} workloads, release {version}
    home: https://example.org/{chart}
    icon: https://example.org/{chart}/icon.png
    keywords:
    - {kw1}
    - {kw2}
    maintainers:
    - email: team-{chart}@example.org
      name: team-{chart}
    sources:
    - https://example.org/src/{chart}
    annotations:
      category: {kw1.title()}
      licenses: Apache-2.0
      images: |
        - name: {chart}
          image: docker.io/example/{chart}:{app_version}-debian-12-r0
        - name: os-shell
          image: docker.io/example/os-shell:12-debian-12-r0
    dependencies:
    - name: common
      repository: oci://registry.example.org/charts
      tags:
      - example-common
      version: 2.x.x
    created: "2024-01-{1 + j % 28:02d}T00:00:00Z"
    digest: {digest}
    urls:
    - {chart}-{version}.tgz
"""


def write_index(path: Path, charts: int, versions: int) -> int:
    parts = ["apiVersion: v1\nentries:\n"]
    for i in range(charts):
        chart = f"app-{WORDS[i % len(WORDS)]}-{i:05d}"
        parts.append(f"  {chart}:\n")
        parts.extend(_entry(chart, i, j) for j in range(versions))
    parts.append('generated: "2024-02-01T00:00:00Z"\n')
    data = "".join(parts).encode()
    path.write_bytes(data)
    return len(data)
