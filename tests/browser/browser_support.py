"""Real-browser tests: Debian's chromium driven by chromedriver through selenium, against
a real ``msgcenter serve`` over loopback.

Tests using :func:`chromium` are marked ``browser``.  Locally they are skipped (with the
reason shown) when chromium or chromedriver is missing; with ``MC_REQUIRE_BROWSER=1``
(set by ``.ci/run``) they fail instead.  Run the suite without them:
``make test PYTEST_ARGS='-m "not browser"'``.  A failing step leaves a screenshot and
the page's HTML under ``var/browser-failures/`` (:func:`kept_on_failure`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MC_CHROMEDRIVER", "/usr/bin/chromedriver")
REQUIRE = os.environ.get("MC_REQUIRE_BROWSER") == "1"
FAILURES = ROOT / "var" / "browser-failures"


@contextlib.contextmanager
def chromium(profile_dir: Path) -> Iterator[Any]:
    """A headless chromium (skips, or fails under MC_REQUIRE_BROWSER=1, without one)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = (f"browser tests need {', '.join(missing)} "
                   "(apt-get install chromium chromium-driver)")
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--lang=en-US", f"--user-data-dir={profile_dir}",
                "--no-first-run", "--disable-extensions", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def kept_on_failure(driver: Any, name: str) -> Iterator[None]:
    """On an exception, save the browser's screenshot and HTML, then re-raise."""
    try:
        yield
    except BaseException:
        FAILURES.mkdir(parents=True, exist_ok=True)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(FAILURES / f"{safe}.png"))
            (FAILURES / f"{safe}.html").write_text(driver.page_source, encoding="utf-8")
            print(f"screenshot of the failure: {FAILURES / safe}.png")
        raise
