"""A marketer's journey through the console in a real chromium, against ``msgcenter
serve`` on loopback (SQLite file and PostgreSQL): log in, create a template, see its
syntax error at its line, fix it, preview it on a seed's data, send a proof, publish,
push an event, find it in History and open its page, pause the template, and watch
Monitoring show the waiting event.

``MC_SCREENSHOTS=DIR`` (``make screenshots``) saves the pages the docs show.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_support import chromium, kept_on_failure
from conftest import ROOT, free_port, msgcenter_cmd, run_cli, throwaway_postgres, wait_http

from soap_service.devsmtp import MailSink

PASSWORD = "pw-marketer-1"
CTX = '<ctx><client firstname="Zoë"/><order id="A-1042" total="42.50"/></ctx>'
BROKEN = ("<h1>Thank you</h1>\n<p>Hello {{ rtEvent.ctx.client.@firstname }},</p>\n"
          "<p>your order {{ rtEvent.ctx.order.@id </p>\n")
FIXED = ("<h1>Thank you</h1>\n<p>Hello {{ rtEvent.ctx.client.@firstname }},</p>\n"
         "<p>your order {{ rtEvent.ctx.order.@id }} is confirmed.</p>\n")
SHOTS = os.environ.get("MC_SCREENSHOTS", "")

pytestmark = pytest.mark.browser

# WCAG 2 contrast of every element with its own text, against the first opaque
# background among it and its ancestors (the page is white where none is set).
CONTRAST_JS = """
function lum(c) {
  var v = c.match(/[0-9.]+/g).slice(0, 3).map(function (x) {
    x = x / 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
  return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
}
function background(el) {
  for (; el; el = el.parentElement) {
    var bg = getComputedStyle(el).backgroundColor;
    var alpha = bg.match(/[0-9.]+/g);
    if (alpha && (alpha.length < 4 || parseFloat(alpha[3]) > 0.5)) { return bg; }
  }
  return "rgb(255, 255, 255)";
}
var bad = [];
document.querySelectorAll("body *").forEach(function (el) {
  var own = Array.prototype.some.call(el.childNodes, function (n) {
    return n.nodeType === 3 && n.textContent.trim(); });
  var box = el.getBoundingClientRect();
  if (!own || box.width === 0 || box.height === 0 || el.closest("svg")) { return; }
  var style = getComputedStyle(el);
  if (style.visibility === "hidden") { return; }
  var a = lum(style.color), b = lum(background(el));
  var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  var size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
  var large = size >= 24 || (bold && size >= 18.66);
  if (ratio < (large ? 3 : 4.5)) {
    bad.push(el.tagName + " '" + el.textContent.trim().slice(0, 30) + "' " + ratio.toFixed(2));
  }
});
return bad;
"""


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "profile") as browser:
        yield browser


@dataclass
class Served:
    url: str
    env: dict[str, str]
    sink: MailSink


@contextlib.contextmanager
def _database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/mc.db"
        return
    with throwaway_postgres("mc_browser") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """``msgcenter serve --no-worker`` on a free port, set up with the CLI: an operator
    with the ``mc`` right, a loopback zone, the event type; proofs go to an SMTP sink."""
    with _database(request.param, tmp_path) as url, \
            MailSink(directory=tmp_path / "mail") as sink:
        port = free_port()
        env = {"MC_DATABASE_URL": url, "MC_PUBLIC_URL": f"http://127.0.0.1:{port}",
               "MC_SQLITE_SYNCHRONOUS": "normal", "MC_SMTP_HOST": sink.host,
               "MC_SMTP_PORT": str(sink.port), "PYTHONUNBUFFERED": "1",
               "HOME": str(tmp_path), "MC_SECRET": "browser-test-secret"}
        run_cli(env, "init")
        run_cli(env, "zone", "add", "loopback", "127.0.0.0/8", "--allow-user-password")
        run_cli(env, "operator", "add", "marketer", "--password", PASSWORD, "--right", "mc")
        run_cli(env, "operator", "add", "boss", "--password", PASSWORD, "--right", "admin")
        run_cli(env, "eventtype", "add", "order_confirmation", "--label", "Order confirmed")
        log_path = tmp_path / "serve.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                msgcenter_cmd("serve", "--host", "127.0.0.1", "--port", str(port),
                              "--workers", "1", "--no-worker"),
                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                cwd=str(ROOT))
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log_path=log_path)
            yield Served(f"http://127.0.0.1:{port}", env, sink)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Console:
    """The journey's steps, as a person does them: find, type, click, read."""

    def __init__(self, driver: Any, base: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import Select, WebDriverWait

        self.d, self.base, self.By, self.Select = driver, base, By, Select
        self.wait = WebDriverWait(driver, 30)
        self.ec = expected_conditions

    def open(self, path: str) -> None:
        self.d.get(self.base + path)
        self._loaded()

    def _loaded(self) -> None:
        self.wait.until(lambda d: d.execute_script("return document.readyState") ==
                        "complete")

    def find(self, css: str) -> Any:
        return self.wait.until(self.ec.presence_of_element_located((self.By.CSS_SELECTOR,
                                                                    css)))

    def text(self, css: str) -> str:
        return str(self.find(css).text)

    def type(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def choose(self, css: str, visible: str) -> None:
        self.Select(self.find(css)).select_by_visible_text(visible)

    def click(self, css: str) -> None:
        """Click something that loads a page, and wait for the new page."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

        old = self.find("html")
        self.press(css)

        def replaced(_driver: Any) -> bool:
            # chromedriver answers a query on a node of the replaced document with either
            # error: both mean the old page is gone
            try:
                old.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as exc:
                if "does not belong to the document" in str(exc.msg):
                    return True
                raise
            return False

        self.wait.until(replaced)
        self._loaded()

    def press(self, css: str) -> None:
        """Click.  chromedriver may report "Node with given id does not belong to the
        document" for a click whose navigation replaced the document before it answered;
        the click was made, and the caller checks its effect (the new page, the frame's
        new content), so a click that did nothing still fails the test."""
        from selenium.common.exceptions import WebDriverException

        try:
            self.find(css).click()
        except WebDriverException as exc:
            if "does not belong to the document" not in str(exc.msg):
                raise

    def tab_order(self, count: int) -> list[str]:
        """What the Tab key reaches first, from the top of the page: each element's id,
        or its text when it has none."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        reached = []
        for _ in range(count):
            ActionChains(self.d).send_keys(Keys.TAB).perform()
            element = self.d.switch_to.active_element
            reached.append(element.get_attribute("id") or element.text.strip())
        return reached

    def check(self, css: str, on: bool) -> None:
        box = self.find(css)
        if box.is_selected() != on:
            box.click()
        assert box.is_selected() == on

    def set_text(self, css: str, value: str) -> None:
        """Replace a field's text at once, as a paste does (one input event)."""
        self.d.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            self.find(css), value)

    def frame_shows(self, frame: Any, text: str) -> None:
        """Wait until the frame's document contains ``text`` (it may be loading)."""
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        self.d.switch_to.frame(frame)
        try:
            WebDriverWait(self.d, 30, ignored_exceptions=(
                NoSuchElementException, StaleElementReferenceException)).until(
                lambda d: text in d.find_element(self.By.TAG_NAME, "body").text)
        finally:
            self.d.switch_to.default_content()

    def low_contrast(self) -> list[str]:
        """Visible text whose colour against its background is below WCAG AA (4.5:1, or
        3:1 for large text), as the browser computes the styles."""
        found: list[str] = self.d.execute_script(CONTRAST_JS)
        return found

    def heading(self) -> str:
        return self.text("h1")

    def flashes(self) -> str:
        return " ".join(e.text for e in self.d.find_elements(self.By.CSS_SELECTOR, ".flash"))

    def shot(self, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.d.save_screenshot(str(Path(SHOTS) / f"console-{name}.png"))


def test_marketer_journey(driver: Any, served: Served, request: pytest.FixtureRequest
                          ) -> None:
    """The journey of the issue, every step checked on the page the browser shows."""
    with kept_on_failure(driver, request.node.name):
        marketer_journey(driver, served)


def marketer_journey(driver: Any, served: Served) -> None:
    c = Console(driver, served.url)
    c.open("/console/")
    assert c.heading() == "Log in"
    assert c.tab_order(5) == ["Skip to content", "Message Center", "login", "password",
                             "Log in"]
    assert c.low_contrast() == []
    c.type("#login", "marketer")
    c.type("#password", PASSWORD)
    c.shot("login")
    c.click("form button[type=submit]")
    assert c.heading() == "Browse"

    c.click("nav a[href='/console/templates']")
    c.type("#n-name", "order_email")
    c.choose("#n-type", "order_confirmation")
    c.choose("#n-channel", "email")
    c.click("#new-template button[type=submit]")
    assert c.heading() == "Edit the draft of order_email"
    c.check("#live-auto", False)  # no preview refresh while typing: checked on its own below

    c.type("#part-from_addr", "Shop <shop@example.com>")
    c.type("#part-subject", "Your order {{ rtEvent.ctx.order.@id }}")
    c.type("#part-html", BROKEN)
    c.click("button[value=save]")
    assert c.text("#edit-error .line") == "3"
    assert c.low_contrast() == []
    assert c.find("#part-html").get_attribute("aria-invalid") == "true"
    c.check("#live-auto", False)
    c.shot("syntax-error")

    c.type("#part-html", FIXED)
    c.press("#live-button")  # the unsaved text, rendered in the sandboxed frame
    live = c.find("iframe#live-preview")
    assert live.get_attribute("sandbox") == ""
    c.frame_shows(live, "is confirmed.")
    c.check("#live-auto", True)  # with JavaScript, the frame follows the typing
    c.set_text("#part-html", FIXED.replace("is confirmed.", "is on its way."))
    c.frame_shows(live, "is on its way.")
    c.check("#live-auto", False)
    c.set_text("#part-html", FIXED)
    c.click("button[value=save]")
    assert "Draft saved." in c.flashes()
    assert c.heading() == "Template order_email"

    c.type("#s-address", "zoe@example.com")
    c.type("#s-ctx", CTX)
    c.click("#add-seed button[type=submit]")
    assert "Seed zoe@example.com saved." in c.flashes()

    c.click("a[href='/console/templates/order_email/preview']")
    c.choose("#pv-seed", "zoe@example.com")
    c.click("form.filters button[type=submit]")
    assert c.text("#subject") == "Your order A-1042"
    frame = c.find("iframe.preview")
    assert frame.get_attribute("sandbox") == ""
    c.shot("preview")
    c.frame_shows(frame, "Hello Zoë,")
    c.frame_shows(frame, "your order A-1042 is confirmed.")

    c.click("main a[href='/console/templates/order_email']")
    c.click("#proof button[type=submit]")
    assert "zoe@example.com: sent" in c.flashes()
    assert [m.message["Subject"] for m in served.sink.messages] == [
        "[PROOF] Your order A-1042"]

    c.click("#lifecycle form[action$='/publish'] button")
    assert "Published version 1 of order_email." in c.flashes()
    assert c.text("#state") == "published v1"
    c.shot("template")

    pushed = run_cli(served.env, "push", "--type", "order_confirmation", "--email",
                     "buyer@example.com", "--ctx", CTX, "--url", served.url,
                     "--token", f"marketer/{PASSWORD}").stdout
    plid = next(word for word in pushed.split() if word.isdigit() and len(word) > 6)

    c.click("nav a[href='/console/history']")
    c.type("#address", "buyer@example.com")
    c.click("form.filters button[type=submit]")
    c.shot("history")
    c.click(f"#events a[href='/console/events/{plid}']")
    assert c.heading() == f"Event {plid}"
    assert c.text("#facts .status") == "pending"
    assert '"A-1042"' in c.text("#ctx")
    c.shot("event")

    c.open("/console/templates/order_email")
    c.click("#lifecycle form[action$='/pause'] button")
    assert c.text("#state") == "paused v1"

    c.click("nav a[href='/console/browse']")
    assert c.low_contrast() == []
    c.shot("browse")
    c.click("nav a[href='/console/monitoring']")
    pending = c.d.find_elements(c.By.CSS_SELECTOR, "#queues tbody tr td:nth-child(3)")
    assert [p.text for p in pending] == ["1"]
    assert c.find("svg#chart-queues rect.bar").get_attribute("data-value") == "1"
    assert c.low_contrast() == []
    c.shot("monitoring")


def test_admin_journey(driver: Any, served: Served, request: pytest.FixtureRequest) -> None:
    """An admin cancels a waiting event, sets a queue threshold that Monitoring and
    /healthz then report, and denylists an address then releases it."""
    with kept_on_failure(driver, request.node.name):
        admin_journey(driver, served)


def admin_journey(driver: Any, served: Served) -> None:
    pushed = [run_cli(served.env, "push", "--type", "order_confirmation", "--email",
                      f"client{n}@example.com", "--ctx", CTX, "--url", served.url,
                      "--token", f"boss/{PASSWORD}").stdout for n in range(2)]
    plid = next(w for w in pushed[0].split() if w.isdigit() and len(w) > 6)
    c = Console(driver, served.url)
    c.open(f"/console/events/{plid}")
    assert c.heading() == "Log in"
    c.type("#login", "boss")
    c.type("#password", PASSWORD)
    c.click("form button[type=submit]")
    assert c.heading() == f"Event {plid}"  # back where the link pointed
    c.type("#cancel-reason", "customer asked")
    c.click("form[action$='/cancel'] button")
    assert c.text("#facts .status") == "ignored"

    c.click("nav a[href='/console/monitoring']")
    c.type("#orange_queue_due", "1")
    c.type("#red_queue_due", "5")
    c.click("#thresholds button[type=submit]")
    assert "Thresholds saved." in c.flashes()
    assert c.text("tr[data-metric='queue_due'] .level") == "orange"
    lines = driver.find_elements(c.By.CSS_SELECTOR, "svg#chart-queues line.threshold")
    assert len(lines) == 2
    c.wait.until(lambda d: '"warning"' in _get(served.url + "/healthz"))

    c.click("nav a[href='/console/quarantine']")
    c.type("#d-address", "blocked@example.com")
    c.type("#d-reason", "asked to stop")
    c.click("#add-denylist button[type=submit]")
    assert [e.text for e in driver.find_elements(
        c.By.CSS_SELECTOR, "#quarantine tbody td:nth-child(2)")] == ["blocked@example.com"]
    c.click("#quarantine form button")
    assert "removed from quarantine" in c.flashes()
    c.click("nav a[href='/console/audit']")
    actions = [e.text for e in driver.find_elements(c.By.CSS_SELECTOR,
                                                    "#audit tbody td:nth-child(4)")]
    assert actions[:4] == ["quarantine.remove", "quarantine.add", "thresholds.set",
                           "event.cancel"]


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())
