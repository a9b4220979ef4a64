"""The README's "Try it" and "Scripts" shell blocks, run as printed against `serve --demo`."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from tests.e2e.procs import OPENPITRIX, Proc, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"```sh\n(.*?)```", re.DOTALL)


def try_it_blocks() -> list[str]:
    """The shell blocks of the README's "Try it" section (its Scripts part included)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Try it") :]
    section = section[: section.index("\n## ", 1)]
    return FENCE.findall(section)


def test_make_run_serves_the_demo() -> None:
    """`make run` (the README's first block) is `openpitrix serve --demo`, which the test
    below starts itself."""
    blocks = try_it_blocks()
    assert blocks[0].strip() == "make run"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    run = makefile[makefile.index("\nrun:") :].split("\n\n")[0]
    assert "openpitrix serve --demo" in run


async def test_try_it_as_printed_logs_in_streams_the_demo_index_and_scripts_log_in(
    tmp_path: Path,
) -> None:
    blocks = try_it_blocks()
    assert len(blocks) == 3, "make run, the Try it commands, the Scripts commands"
    port = free_port()
    data_dir = tmp_path / "data"
    # A newcomer's environment: no OPENPITRIX_* setting but the two the README reads.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPITRIX_")}
    env.update(OPENPITRIX_PORT=str(port), OPENPITRIX_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    server = Proc("serve", [*OPENPITRIX, "serve", "--demo"], env, tmp_path / "serve.log")
    try:
        await server.wait_for_log("Application startup complete", timeout=60)
        password_file = (data_dir / "admin-password").resolve()
        assert password_file.stat().st_mode & 0o777 == 0o600
        assert f"its password is in {password_file}" in server.log()
        script = "set -eu\n" + blocks[1] + "\necho '--- scripts'\n" + blocks[2]
        shell = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            script,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(shell.communicate(), timeout=60)
        output = out.decode()
        assert shell.returncode == 0, output
        try_it, scripts = output.split("--- scripts\n")
        # The stream of the demo repo's index job ended with the job's terminal event.
        statuses = re.findall(
            r'event: job.status\ndata: \{.*?"type":"job.status".*?"status":"(\w+)"', try_it
        )
        assert statuses[-1] == "successful", try_it
        assert "3 versions of 2 charts" in try_it
        assert '"name": "hello"' in try_it and '"name": "notes"' in try_it
        # Both re-index requests answered with a job id: the client_credentials token works.
        assert re.search(r"^j-\w+$", try_it, re.MULTILINE), try_it
        assert re.fullmatch(r"j-\w+\n", scripts), scripts
    finally:
        server.terminate()
        try:
            await server.wait(timeout=30)
        finally:
            server.close()
            print(server.log())
