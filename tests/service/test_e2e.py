"""End to end in a real headless Chromium (Debian's `chromium`, driven by Playwright's Python package):
open the page, search, rate three movies with the stars, and watch the recommendations change; all of
it under the page's Content-Security-Policy, which refuses nothing the page does."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec.service import Settings, build_server

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def base_url(settings: Settings) -> Iterator[str]:
    port = _free_port()
    server = build_server(settings, host="127.0.0.1", port=port, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _titles(page, selector: str) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator(f"{selector} li .title").all_inner_texts()


def test_search_rate_three_and_recommendations_change(base_url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            blocked: list[str] = []  # the page must work under its CSP: nothing it does is refused
            page.on("console", lambda message: blocked.append(message.text)
                    if "Content Security Policy" in message.text else None)
            page.goto(base_url + "/")
            page.wait_for_selector("body[data-ready='1']")
            assert "biased-mf-als" in page.locator("#model-badge").inner_text()

            page.fill("#search", "the")
            # a function, not an expression: Playwright evaluates an expression with eval(), which
            # the page's Content-Security-Policy forbids
            page.wait_for_function(
                "() => document.querySelectorAll('#search-results li').length >= 3 && "
                "[...document.querySelectorAll('#search-results li .title')]"
                ".every(a => a.textContent.toLowerCase().includes('the'))")
            found = _titles(page, "#search-results")
            assert len(found) >= 3

            seen: list[list[str]] = []
            for position, stars in enumerate([5, 1, 4]):
                row = page.locator("#search-results li").nth(position)
                row.locator(f".stars button[data-value='{stars}']").click()
                page.wait_for_selector(f"#recs[data-rated='{position + 1}'] li")
                seen.append(_titles(page, "#recs"))

            assert len(seen[-1]) == 10
            assert seen[0] != seen[-1]  # three ratings do not give what one gave
            assert not set(found[:3]) & set(seen[-1])  # rated movies are not recommended
            assert page.locator("#my-ratings li").count() == 3
            assert page.locator("#my-ratings .stars button.on").count() == 5 + 1 + 4
            assert page.locator("#genre-chart svg rect").count() >= 1
            assert "because you rated" in page.locator("#recs").inner_text()

            # the profile survives a reload of the page (token kept in the browser, ratings in the store)
            page.reload()
            page.wait_for_selector("body[data-ready='1']")
            page.wait_for_selector("#recs[data-rated='3'] li")
            assert _titles(page, "#recs") == seen[-1]

            # a movie opens with similar movies
            page.locator("#recs li .title").first.click()
            page.wait_for_selector("#movie-dialog[open] #dialog-similar li")
            assert page.locator("#dialog-similar li").count() == 10
            page.click("#dialog-close")

            # a MovieLens user's history and recommendations
            page.click("button[data-tab='users']")
            page.fill("#user-id", "1")
            page.click("#user-show")
            page.wait_for_selector("#user-recs li")
            assert page.locator("#user-history li").count() >= 1

            page.click("button[data-tab='model']")
            assert "rmse" in page.locator("#model-metrics").inner_text()
            assert not failed, f"requests failed: {failed}"
            assert not blocked, f"the Content-Security-Policy refused: {blocked}"
            assert "script-src 'self'" in page.evaluate(
                "async () => (await fetch('/')).headers.get('content-security-policy')")
        finally:
            browser.close()
