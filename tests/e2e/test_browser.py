"""The web page in a real browser, over the whole running system: sign in, create a twin,
point it at a blog, crawl, watch the live progress reach a champion, then write with it and
read the answer as it streams in, with the blog pages it drew on.

The browser is Debian's Chromium driven through Playwright (never a downloaded browser).
A screenshot of every page is saved under $TWIN_SCREENSHOTS_DIR (default: a folder of the
test session), and one of the page as it was when a step failed; their paths are printed.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from llmtwin.testing.browser import CHROMIUM, CHROMIUM_ARGS
from playwright.sync_api import BrowserContext, Locator, Page, expect, sync_playwright

TWIN_NAME = "Browser Twin"  # test_loop.py uses another twin on the same running system
PROMPT = "Write a LinkedIn post about validating data before it reaches production."
# Crawling, cleaning, embedding and training a tiny model on CPU: minutes, not seconds.
CHAMPION_WAIT_SECONDS = 12 * 60
UI_TIMEOUT_MS = 30_000
ANSWER_WAIT_MS = 180_000
# Counts how often the answer's text grew, and notes when the page stops being busy with it.
WATCH_THE_ANSWER = """() => {
  const answer = document.getElementById("answer-text"), section = document.getElementById("answer");
  const watch = window.answerWatch = {growths: 0, finished: false, length: answer.textContent.length};
  new MutationObserver(() => {
    if (answer.textContent.length > watch.length) watch.growths += 1;
    watch.length = answer.textContent.length;
  }).observe(answer, {childList: true, characterData: true, subtree: true});
  new MutationObserver(() => {
    if (section.getAttribute("aria-busy") === "false") watch.finished = true;
  }).observe(section, {attributes: true, attributeFilter: ["aria-busy"]});
}"""


class Screenshots:
    """Numbered full-page screenshots, in the order the journey took them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[Path] = []

    def take(self, page: Page, name: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        print(f"  screenshot: {path}")
        return path

    @contextmanager
    def kept_on_failure(self, page: Page) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.take(page, "failed-here")
            raise


@dataclass(frozen=True)
class Journey:
    page: Page
    site: str  # the web page's base URL
    blog: str  # the person's blog, served on loopback
    logs: Path  # the services' logs, named in failures
    screenshots: Screenshots


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Screenshots:
    chosen = os.environ.get("TWIN_SCREENSHOTS_DIR")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return Screenshots(folder)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[BrowserContext]:
    """Debian's Chromium with a fresh profile folder, headless."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


def field_error(page: Page, field_id: str) -> Locator:
    """The error shown right after a field, tied to it for screen readers."""
    field = page.locator(f"#{field_id}")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", re.compile(rf"\b{field_id}-error\b"))
    return page.locator(f"#{field_id} + .field-error")


def tab_to(page: Page, field_id: str, most: int = 40) -> None:
    """Press Tab until the field has the focus, as a keyboard user would."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == field_id:
            return
    raise AssertionError(f"#{field_id} cannot be reached with the Tab key")


def add_blog(page: Page, url: str) -> None:
    form = page.locator("#profile-form")
    form.get_by_label("Platform").select_option("blog")
    form.get_by_label("Link").fill(url)
    form.get_by_role("button", name="Add link").click()


def progress_line(page: Page) -> str:
    stages = page.locator("#progress dl.stages > div")
    parts = [f"{stages.nth(i).locator('dt').inner_text()}={stages.nth(i).locator('dd').inner_text()}"
             for i in range(stages.count())]
    return (f"{', '.join(parts)}; training: {page.locator('#training-verdict').inner_text()}; "
            f"champion: {page.locator('#champion-version').inner_text()}")


# --- the steps of the journey ----------------------------------------------------------------

def sign_in(journey: Journey, token: str) -> None:
    """Every page sends a stranger to the sign-in form; a wrong token is refused next to the field."""
    page, shots = journey.page, journey.screenshots
    page.goto(f"{journey.site}/")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2F$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shots.take(page, "signin")
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(field_error(page, "signin-token")).to_contain_text("not the admin token")
    shots.take(page, "signin-refused")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{journey.site}/")
    expect(page.get_by_role("heading", name="Your twins")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    shots.take(page, "twins")


def create_twin_with_the_keyboard(journey: Journey) -> str:
    """Tab to the name, type it, Enter submits; returns the twin page's path."""
    page = journey.page
    tab_to(page, "create-name")
    page.keyboard.type(TWIN_NAME)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=TWIN_NAME, level=1)).to_be_visible()
    expect(page).to_have_url(re.compile(r"/twins/[^/]+$"))
    expect(page.locator("#no-profiles")).to_be_visible()
    journey.screenshots.take(page, "twin-created")
    return page.url.removeprefix(journey.site)


def add_the_blog(journey: Journey) -> None:
    """A link the server cannot crawl is refused next to the link field, what was typed kept; then the blog."""
    page, shots = journey.page, journey.screenshots
    link = page.locator("#profile-form").get_by_label("Link")
    add_blog(page, "ftp://example.com/posts")
    expect(field_error(page, "profile-url")).to_contain_text("https://")
    expect(link).to_have_value("ftp://example.com/posts")
    expect(link).to_be_focused()
    shots.take(page, "profile-refused")
    add_blog(page, journey.blog)
    expect(page.locator("#profiles")).to_contain_text(journey.blog)
    expect(page.locator(".field-error")).to_have_count(0)
    shots.take(page, "profile-added")


def crawl_until_a_champion(journey: Journey) -> None:
    """Crawl, then watch the page (no reloads: the numbers arrive live) until it names a champion."""
    page, shots = journey.page, journey.screenshots
    page.get_by_role("button", name="Crawl all sources now").click()
    expect(page.get_by_role("status").filter(has_text="Crawl requested")).to_be_visible()
    expect(page.locator("#live-state")).to_contain_text("Live: last change")
    deadline = time.monotonic() + CHAMPION_WAIT_SECONDS
    last, training_shot = "", False
    while page.locator("#champion-version").inner_text().strip() == "none yet":
        line = progress_line(page)
        if line != last:
            print(f"  progress: {line}")
            last = line
        if not training_shot and page.locator("#training-progress").evaluate("bar => bar.value > 0"):
            shots.take(page, "twin-training")
            training_shot = True
        if time.monotonic() > deadline:
            pytest.fail(f"no champion after {CHAMPION_WAIT_SECONDS}s; the page shows: {line}. "
                        f"Service logs: {journey.logs}")
        page.wait_for_timeout(2_000)
    print(f"  progress: {progress_line(page)}")
    expect(page.locator("#champion-version")).to_have_text(re.compile(r"^version \d+$"))
    assert int(page.locator('[data-field="counts.raw_documents"]').inner_text()) > 0
    assert int(page.locator('[data-field="counts.chunk_records"]').inner_text()) > 0
    shots.take(page, "twin-champion")
    # Reloaded, the page lists what was collected and the champion among the model versions.
    page.reload()
    expect(page.locator("#collected-blog summary")).to_contain_text("document")
    expect(page.locator("#models tr.champion .badge")).to_have_text("champion")
    shots.take(page, "twin-collected")


def write_and_read_the_answer(journey: Journey, twin_path: str) -> None:
    """The answer streams in piece by piece, then the blog pages it drew on are listed as links."""
    page, shots = journey.page, journey.screenshots
    page.get_by_role("link", name="Write with this twin").click()
    expect(page).to_have_url(f"{journey.site}{twin_path}/write")
    expect(page.get_by_role("heading", name=f"Write with {TWIN_NAME}")).to_be_visible()
    expect(page.get_by_role("button", name="Copy the answer")).to_be_hidden()
    shots.take(page, "write")
    page.get_by_label(f"What should {TWIN_NAME} write?").fill(PROMPT)
    page.evaluate(WATCH_THE_ANSWER)
    page.get_by_role("button", name="Write", exact=True).click()
    page.wait_for_function("window.answerWatch.finished", timeout=ANSWER_WAIT_MS)
    shots.take(page, "write-answer")
    problem = page.locator("#write-error")
    assert problem.is_hidden(), f"the page shows an error instead of an answer: {problem.inner_text()}"
    assert page.locator("#answer-text").inner_text().strip()
    assert page.evaluate("window.answerWatch.growths") >= 2, "the answer arrived in one piece, not streamed"
    expect(page.get_by_role("heading", name="Drawn from")).to_be_visible()
    cited = page.locator("#citations li").evaluate_all(
        "items => items.map(item => item.querySelector('a') ? item.querySelector('a').href : item.textContent)")
    assert cited and all(href.startswith(journey.blog) for href in cited), cited
    expect(page.get_by_role("button", name="Copy the answer")).to_be_visible()


@pytest.mark.e2e
@pytest.mark.timeout(CHAMPION_WAIT_SECONDS + 300)
def test_a_person_builds_a_twin_and_writes_with_it_in_the_browser(
        e2e_settings, running_stack, blog_site, browser, screenshots):
    settings = e2e_settings
    journey = Journey(page=browser.new_page(), site=f"http://{settings.host}:{settings.web_port}",
                      blog=f"http://{blog_site.host}:{blog_site.port}/", logs=settings.data_dir / "logs",
                      screenshots=screenshots)
    with screenshots.kept_on_failure(journey.page):
        sign_in(journey, settings.web_admin_token.get_secret_value())
        twin_path = create_twin_with_the_keyboard(journey)
        add_the_blog(journey)
        crawl_until_a_champion(journey)
        write_and_read_the_answer(journey, twin_path)
    print("  screenshots saved:\n" + "\n".join(f"    {path}" for path in screenshots.taken))
