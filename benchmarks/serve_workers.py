"""The plain FastAPI app (benchmarks/plain_api.py) served with uvicorn's own configuration by the supervisor
`aduana serve --workers N` uses (serving/api/workers.py: a listening socket per worker), so that the two apps are
compared on the same footing. Usage, from the repository root: python benchmarks/serve_workers.py APP PORT WORKERS."""
from __future__ import annotations

import sys

import uvicorn

from serving.api.workers import run

if __name__ == "__main__":
    config = uvicorn.Config(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), workers=int(sys.argv[3]),
                            factory=True, log_level="info")
    config.access_log = False  # info: each worker's "Application startup complete", not a line per call
    run(config, config.workers)
