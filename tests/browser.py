"""Headless Chromium for the page tests, with every network except loopback and files cut off.

CI installs Debian's `chromium` (.ci/run). Elsewhere, a test that needs it is skipped when it is missing; under
CI=true a missing browser fails the test instead, so the pages are never silently unchecked.
Screenshots go to ADUANA_SCREENSHOTS (default `build/screenshots` in the repository), for people to look at, or to
the folder a test names.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("ADUANA_SCREENSHOTS", REPO / "build" / "screenshots"))
OFFLINE = [
    "--proxy-server=http://127.0.0.1:9",  # nothing listens there: every request off loopback fails
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]


def chromium() -> str:
    """The browser's path, or skip (fail under CI)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs Debian's package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def _run(url: str, *args: str, budget_ms: int = 15_000, timeout: float = 90) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--hide-scrollbars", f"--virtual-time-budget={budget_ms}", *OFFLINE, *args, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(url: str, budget_ms: int = 15_000) -> str:
    """The page's DOM after its scripts have run (offline)."""
    return _run(url, "--dump-dom", budget_ms=budget_ms).stdout


def screenshot(url: str, name: str, size: str = "1400,1000", budget_ms: int = 15_000,
               folder: Path | None = None) -> Path:
    """A PNG of the page (offline) under `folder` (default SCREENSHOTS); fails if the browser wrote nothing."""
    folder = folder or SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    path.unlink(missing_ok=True)
    _run(url, f"--screenshot={path}", f"--window-size={size}", budget_ms=budget_ms)
    assert path.is_file() and path.stat().st_size > 0, f"no screenshot of {url}"
    return path


def image_size(path: Path) -> tuple[int, int]:
    """The screenshot's width and height in pixels."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def distinct_colours(path: Path) -> int:
    """How many colours the screenshot holds: a blank or unstyled page has very few."""
    from PIL import Image

    with Image.open(path) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
