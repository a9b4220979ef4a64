"""The read benchmark's baseline: a bare FastAPI app with one constant route, served by uvicorn
with the settings `openpitrix api` uses (see openpitrix.cli._serve_http).

usage: python bench/bare_app.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def constant() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    # Same as the gateway: loop and http "auto" (uvloop and httptools when installed), no
    # access log configuration, one process.
    config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None)
    uvicorn.Server(config).run()
