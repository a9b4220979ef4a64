"""Package Helm charts with arbitrary files (templates, subcharts, CRDs) into .tgz bytes."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping

# Same pinned timestamp as tests/support/charts.py, so packages are byte-identical between runs.
_TAR_MTIME = 1_704_067_200


def chart_yaml(
    name: str,
    version: str = "0.1.0",
    *,
    app_version: str = "1.0.0",
    chart_type: str = "application",
    dependencies: str = "",
) -> str:
    """A Chart.yaml; `dependencies` is the YAML list body, already indented by two spaces."""
    text = (
        f"apiVersion: v2\nname: {name}\nversion: {version}\n"
        f'appVersion: "{app_version}"\ntype: {chart_type}\n'
    )
    if dependencies:
        text += f"dependencies:\n{dependencies}"
    return text


def package_chart(root: str, files: Mapping[str, str | bytes]) -> bytes:
    """A gzip tarball rooted at `root/`, the layout `helm package` writes; paths are relative."""
    raw = io.BytesIO()
    # gzip's own header carries a timestamp too; pin it so the bytes only depend on content.
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for relative, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{root}/{relative}")
            info.size = len(data)
            info.mtime = _TAR_MTIME
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()
