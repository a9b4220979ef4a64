"""Install the test cloud provider the way a third-party package is installed: a
`openpitrix_testcloud-0.1.dist-info` directory (METADATA and entry_points.txt) on `sys.path`,
next to the module's own directory, so `importlib.metadata.entry_points()` finds its
`openpitrix.providers` entry point exactly as it finds an installed distribution's.

Nothing in the server names the plugin: this must happen before the composition root first
loads the entry points in the process, hence `pytest_configure`. Child processes (the
end-to-end tests' gateway and workers) get the same through PYTHONPATH."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent / "testcloud"
DIST = "openpitrix_testcloud"
VERSION = "0.1"
ENTRY_POINTS = """\
[openpitrix.providers]
testcloud = openpitrix_testcloud.provider:TestCloudProvider
"""


def install() -> Path:
    """Write the distribution's metadata into a directory of its own and put it, and the
    module's directory, first on sys.path and PYTHONPATH; returns the metadata directory."""
    site = Path(tempfile.mkdtemp(prefix="openpitrix-plugins-"))
    info = site / f"{DIST}-{VERSION}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n"
        "Summary: A VM cloud provider for openpitrix tests\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (info / "top_level.txt").write_text(f"{DIST}\n")
    for path in (str(MODULE_DIR), str(site)):
        if path not in sys.path:
            sys.path.insert(0, path)
    inherited = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(MODULE_DIR), str(site), *([inherited] if inherited else [])]
    )
    return site


def uninstall(site: Path) -> None:
    shutil.rmtree(site, ignore_errors=True)
