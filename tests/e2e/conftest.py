"""Browser fixtures: Debian's chromium driven by Playwright, screenshots kept on failure."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def ensure_chromium() -> str:
    """Debian's chromium; installed with apt when missing (never a downloaded browser build)."""
    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get") is None:
            raise RuntimeError("chromium is missing and apt-get is not available: install Debian's 'chromium'")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
    return CHROMIUM


def pytest_collection_modifyitems(config, items):
    # Sync Playwright drives its own event loop in this thread while it runs; asyncio tests
    # must not run during that, so browser tests go last (and Playwright stops after them).
    items.sort(key=lambda item: item.path.is_relative_to(Path(__file__).parent))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    ensure_chromium()
    with sync_playwright() as p:
        yield p


@pytest.fixture
def open_browser(request, playwright_instance, tmp_path):
    """``open_browser()`` → a page in a fresh chromium profile (its own cookies: another person at another
    computer); a screenshot of each lands in test-artifacts/ if the test fails."""
    contexts = []

    def open_one():
        profile = tmp_path / f"profile-{len(contexts)}"
        context = playwright_instance.chromium.launch_persistent_context(
            str(profile),
            executable_path=ensure_chromium(),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(60_000)
        contexts.append(context)
        return context.pages[0] if context.pages else context.new_page()

    yield open_one
    failed = getattr(request.node, "rep_call", None)
    for index, context in enumerate(contexts):
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            for number, page in enumerate(context.pages):
                try:
                    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{index}-{number}.png"), full_page=True)
                except Exception as e:  # the page may be gone; the test's own error matters more
                    print(f"no screenshot: {e}")
        context.close()


@pytest.fixture
def browser_page(open_browser):
    """A page in a fresh chromium profile."""
    return open_browser()
