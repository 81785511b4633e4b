"""Headless Chromium for the browser tests (tests/test_browser.py, tests/test_report_browser.py).

Debian's ``chromium`` package at /usr/bin/chromium is driven by Playwright,
never a browser downloaded by ``playwright install``. Without Chromium (or
Playwright) the tests that use the :func:`browser` fixture are skipped, except
in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:     # the browser fixture skips (or fails in CI) without Playwright
    class PlaywrightTimeout(Exception):
        """Stands for Playwright's timeout where Playwright is not installed."""


def unavailable(reason: str):
    """Skip the test for want of ``reason``, or fail it in CI, which must run the browser tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium and playwright)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium launched by Playwright, closed at the end of the module."""
    if not CHROMIUM.is_file():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    """The screenshot folder: ``$PS3D_SCREENSHOT_DIR`` when set, else one in the test's temporary folder."""
    folder = Path(os.environ.get("PS3D_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
