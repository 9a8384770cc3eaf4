"""A headless Chromium for the console's browser tests and its benchmark: Debian's `chromium` driven
through Debian's `chromedriver` (same build, so the driver always matches the browser) by Selenium.
Both packages are installed with apt when missing; nothing is downloaded at run time (Selenium Manager
stays offline: the driver's path is given)."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from camerafleet_dev.devservers import debian

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DEBIAN_PACKAGES = {CHROMIUM: "chromium", CHROMEDRIVER: "chromium-driver"}


def headless_chromium(width: int = 1280, height: int = 800, out: TextIO | None = None) -> webdriver.Chrome:
    """A Chromium session with a `width` x `height` window; the caller quits it."""
    debian.install(DEBIAN_PACKAGES, out or sys.stderr, "the console's browser tests")
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",  # no update checks, no safe-browsing lists: loopback only
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
