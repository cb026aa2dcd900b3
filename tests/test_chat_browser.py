"""examples/chat end to end in a real headless browser: Debian's chromium
driven by Playwright (never a downloaded browser), against a real
``python -m examples.chat`` process.

Needs ``pip install playwright`` and ``/usr/bin/chromium`` (Debian package
``chromium``); skips without them, fails without them under GKIT_REQUIRE_ALL=1.
The screenshot goes to $GKIT_ARTIFACTS (default /tmp/gkit-artifacts).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.chat.testing import ChatProcess, require, room_name  # noqa: E402

CHROMIUM = os.environ.get("GKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
ARTIFACTS = Path(os.environ.get("GKIT_ARTIFACTS") or "/tmp/gkit-artifacts")
WAIT_MS = 15_000

pytestmark = pytest.mark.timeout(180)

# The page, in a context of its own, with what it reported on the side.
Page = Any


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright: Any
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(sync_playwright is not None,
            "Playwright for Python is not installed (pip install playwright; "
            "no browser download needed, the test uses Debian's chromium)")
    require(os.path.exists(CHROMIUM),
            f"{CHROMIUM} not found (Debian: apt-get install chromium; or set GKIT_CHROMIUM)")
    assert sync_playwright is not None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatProcess]:
    proc = ChatProcess()
    try:
        yield proc
    finally:
        proc.stop()


def open_page(browser: Any, url: str, init_script: str = "") -> Tuple[Page, Dict[str, List[str]]]:
    context = browser.new_context()
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    seen: Dict[str, List[str]] = {"dialogs": [], "errors": [], "console": []}

    def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}"))
    page.goto(url)
    return page, seen


def join(page: Page, nick: str, transport: str) -> None:
    page.fill("#nick", nick)
    page.click("#join button")
    wait_text(page, "#transport", transport)
    wait_text(page, "#status", "connected")
    assert not page.is_visible("#join") and page.is_visible("#say")


def wait_text(page: Page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.textContent === text",
        arg=[selector, text], timeout=WAIT_MS)


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")
    page.wait_for_function("() => document.querySelector('#text').value === ''", timeout=WAIT_MS)


def wait_message(page: Page, nick: str, text: str) -> None:
    """Wait until the log shows ``nick: text``, compared as DOM text."""
    page.wait_for_function(
        """([nick, text]) => [...document.querySelectorAll('#log li.msg')].some(li =>
               li.querySelector('.nick').textContent === nick &&
               li.querySelector('.text').textContent === text)""",
        arg=[nick, text], timeout=WAIT_MS)


def messages(page: Page) -> List[List[str]]:
    return page.eval_on_selector_all(
        "#log li.msg",
        "els => els.map(li => [li.querySelector('.nick').textContent, "
        "li.querySelector('.text').textContent])")


def test_two_websocket_pages_and_a_polling_page_share_one_room(
        browser: Any, chat: ChatProcess) -> None:
    room = room_name("browser")
    url = f"{chat.url}r/{room}"
    alice, alice_seen = open_page(browser, url)
    bob, bob_seen = open_page(browser, url)
    carol, carol_seen = open_page(browser, url + "?transport=poll")
    join(alice, "alice", "WebSocket")
    join(bob, "bob", "WebSocket")
    join(carol, "carol", "long polling")
    assert alice.text_content("#room") == f"#{room}"

    say(alice, "hello from alice")
    for page in (alice, bob, carol):
        wait_message(page, "alice", "hello from alice")
    say(carol, "carol here, polling")
    for page in (alice, bob, carol):
        wait_message(page, "carol", "carol here, polling")
    say(bob, "bob too")
    for page in (alice, bob, carol):
        wait_message(page, "bob", "bob too")
    # Joins are announced.
    alice.wait_for_function(
        "() => [...document.querySelectorAll('#log li.join')].map(li => li.textContent)"
        ".some(t => t.endsWith('carol joined'))", timeout=WAIT_MS)

    # Markup is text: no element, no script run, no dialog.
    evil = "<script>alert(1)</script>"
    img = '<img src=x onerror="alert(2)">'
    say(bob, evil)
    say(carol, img)
    for page in (alice, bob, carol):
        wait_message(page, "bob", evil)
        wait_message(page, "carol", img)
        assert page.locator("#log script").count() == 0
        assert page.locator("#log img").count() == 0
    for seen in (alice_seen, bob_seen, carol_seen):
        assert seen["dialogs"] == []
        assert seen["errors"] == []

    expected = [["alice", "hello from alice"], ["carol", "carol here, polling"],
                ["bob", "bob too"], ["bob", evil], ["carol", img]]
    assert messages(alice) == expected

    # A reload shows the history (and rejoins with the remembered nickname).
    bob.reload()
    wait_message(bob, "carol", img)
    assert messages(bob) == expected
    wait_text(bob, "#status", "connected")
    say(bob, "back after reload")
    wait_message(alice, "bob", "back after reload")
    wait_message(carol, "bob", "back after reload")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "chat-browser.png"
    alice.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000
    carol.screenshot(path=str(ARTIFACTS / "chat-browser-poll.png"), full_page=True)
    for page in (alice, bob, carol):
        page.context.close()


# Makes every WebSocket the page opens fail its handshake (the server answers
# 404), as a proxy that drops the Upgrade header would.
BREAK_WEBSOCKET = """
(() => {
  const Native = window.WebSocket;
  function Broken(url, protocols) { return new Native(url.replace('/ws?', '/no-ws?'), protocols); }
  Broken.prototype = Native.prototype;
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Broken[k] = Native[k];
  window.WebSocket = Broken;
})();
"""


def test_page_falls_back_to_long_polling_when_websocket_cannot_open(
        browser: Any, chat: ChatProcess) -> None:
    room = room_name("fallback")
    url = f"{chat.url}r/{room}"
    dora, dora_seen = open_page(browser, url, init_script=BREAK_WEBSOCKET)
    erin, _ = open_page(browser, url)
    join(erin, "erin", "WebSocket")
    join(dora, "dora", "long polling")       # picked by itself, not forced
    say(dora, "no websocket here")
    wait_message(erin, "dora", "no websocket here")
    say(erin, "got it")
    wait_message(dora, "erin", "got it")
    assert dora_seen["errors"] == [] and dora_seen["dialogs"] == []
    assert any("long polling (WebSocket could not open)" in line for line in dora_seen["console"])
    for page in (dora, erin):
        page.context.close()


def test_overlong_input_is_refused_with_a_message(browser: Any, chat: ChatProcess) -> None:
    room = room_name("limits")
    page, seen = open_page(browser, f"{chat.url}r/{room}")
    join(page, "frank", "WebSocket")
    # The input's maxlength stops typing; a script that gets around it is
    # refused by the server, and the page says why.
    page.evaluate("() => { const t = document.querySelector('#text'); "
                  "t.removeAttribute('maxlength'); t.value = 'x'.repeat(2001); }")
    page.press("#text", "Enter")
    wait_text(page, "#error", "Message too long: the limit is 2000 characters.")
    page.evaluate("() => { const t = document.querySelector('#text'); t.value = 'ok now'; }")
    page.press("#text", "Enter")
    wait_message(page, "frank", "ok now")
    assert seen["errors"] == []
    page.context.close()
