"""The built site in a real browser: every page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

``nox -s docs_browser`` builds the site, names its folder in ``XE_VERIFY_SITE`` and runs this file. The site is served
from 127.0.0.1 by a server started here; every page must load without a console error, request nothing from
anywhere else, typeset every formula with the site's own KaTeX and show every plot; the search must find pages.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SITE = Path(os.environ["XE_VERIFY_SITE"]).resolve()
CHROMIUM = os.environ.get("XE_VERIFY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("XE_VERIFY_CHROMEDRIVER", "/usr/bin/chromedriver")
PAGES = sorted(path.relative_to(SITE).as_posix() for path in SITE.rglob("*.html") if path.name != "404.html")
TIMEOUT = 30

# What the browser may load besides the site itself: inline data, and the page's own in-memory objects.
LOCAL_SCHEMES = ("data", "blob", "about", "chrome", "devtools")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    """The site, served from 127.0.0.1 on a free port for the whole session."""
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile, its console and network logged, its background services off."""
    profile = tempfile.mkdtemp(prefix="xe-verify-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(browser: webdriver.Chrome, url: str) -> None:
    """Load ``url`` with the logs of earlier pages cleared, and wait until the page's scripts have run."""
    browser.get_log("browser")
    browser.get_log("performance")
    browser.get(url)
    WebDriverWait(browser, TIMEOUT).until(
        lambda driver: driver.execute_script("return document.readyState") == "complete"
    )
    # assets/javascripts/katex.js typesets when Material's document$ fires; every formula must end up typeset.
    # A timeout is reported by the maths check, which names the formulas left untypeset.
    with contextlib.suppress(TimeoutException):
        WebDriverWait(browser, TIMEOUT).until(
            lambda driver: driver.execute_script(
                "return [...document.querySelectorAll('.arithmatex')].every(e => e.querySelector('.katex'))"
            )
        )


def _requested_urls(browser: webdriver.Chrome) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_offline_with_maths_and_plots(browser: webdriver.Chrome, base_url: str, page: str) -> None:
    """No console error, no request outside 127.0.0.1, every formula typeset, every plot drawn."""
    html = (SITE / page).read_text(encoding="utf-8")
    _open(browser, base_url + page)

    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"{page}: console errors: {errors}"

    server = urlsplit(base_url).netloc
    foreign = [
        url
        for url in _requested_urls(browser)
        if urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).netloc != server
    ]
    assert not foreign, f"{page}: requests outside {server}: {foreign}"

    formulas = len(re.findall(r'class="arithmatex"', html))
    untypeset = browser.execute_script(
        "return [...document.querySelectorAll('.arithmatex')].filter(e => !e.querySelector('.katex'))"
        ".map(e => e.textContent.slice(0, 80))"
    )
    assert not untypeset, f"{page}: formulas left untypeset: {untypeset}"
    assert len(browser.find_elements(By.CSS_SELECTOR, ".arithmatex .katex")) == formulas
    assert not browser.find_elements(By.CSS_SELECTOR, ".katex-error")

    plots = len(re.findall(r'<figure class="xe-plot">', html))
    drawn = browser.execute_script(
        "return [...document.querySelectorAll('figure.xe-plot svg')].filter(s => s.querySelector('path')).length"
    )
    assert drawn == plots, f"{page}: {plots} plots in the page, {drawn} drawn"


def test_the_site_has_maths_and_plots() -> None:
    """The per-page checks above are not vacuous: the learning pages carry formulas and plots."""
    for page in ("learn/information-theory.html", "learn/cross-entropy.html", "learn/binary-cross-entropy.html"):
        html = (SITE / page).read_text(encoding="utf-8")
        assert 'class="arithmatex"' in html, page
        assert '<figure class="xe-plot">' in html, page


def _search(browser: webdriver.Chrome, query: str) -> list[str]:
    """Type ``query`` into Material's search box; the result links, once the index has answered."""
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.click()
    box.send_keys(query)
    WebDriverWait(browser, TIMEOUT).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
    )
    return [link.get_attribute("href") for link in browser.find_elements(By.CSS_SELECTOR, ".md-search-result__link")]


def test_search_finds_the_label_smoothing_pages(browser: webdriver.Chrome, base_url: str) -> None:
    """The search index is served with the site and answers a query with links into it."""
    _open(browser, base_url + "index.html")
    links = _search(browser, "label smoothing")
    assert any("learn/cross-entropy.html" in link for link in links), links
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_site_works_from_the_file_system(browser: webdriver.Chrome) -> None:
    """Opened as files, without a server (Material's offline plugin): maths, plots and search still work."""
    _open(browser, (SITE / "learn" / "cross-entropy.html").as_uri())
    assert browser.find_elements(By.CSS_SELECTOR, ".arithmatex .katex")
    assert browser.find_elements(By.CSS_SELECTOR, "figure.xe-plot svg")
    links = _search(browser, "label smoothing")
    assert any(link.startswith("file://") and "cross-entropy.html" in link for link in links), links
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_internal_links_and_anchors_resolve() -> None:
    """Every relative link of every page (including those in executed output) points to a file and an anchor."""
    broken = []
    for page in [*PAGES, "404.html"]:
        html = (SITE / page).read_text(encoding="utf-8")
        for href in re.findall(r'href="([^"]+)"', html):
            if re.match(r"[a-z][a-z0-9+.-]*:", href) or href.startswith(("#", "/")):
                continue
            path, _, anchor = href.partition("#")
            target = (SITE / page).parent / path.split("?")[0]
            if target.is_dir():
                target /= "index.html"
            if not target.is_file():
                broken.append(f"{page}: {href} (no file)")
            elif anchor and target.suffix == ".html" and f'id="{anchor}"' not in target.read_text(encoding="utf-8"):
                broken.append(f"{page}: {href} (no anchor)")
    assert not broken, broken
