"""The write page's script in a real browser: the answer streams in, then its sources, each with
what the answer quoted from it word for word."""
from __future__ import annotations

from llmtwin.testing.browser import CHROMIUM, CHROMIUM_ARGS
from playwright.async_api import async_playwright, expect


async def test_each_source_says_how_many_words_the_answer_quoted_from_it(web):
    web.inference.citations = [
        {"chunk_id": "c1", "document_id": "d1", "link": "https://ada.example/posts/ship", "title": "Ship it",
         "score": 0.9, "copied_words": 12},
        {"chunk_id": "c2", "document_id": "d2", "link": "https://ada.example/posts/wait", "title": "Wait",
         "score": 0.8, "copied_words": 0}]
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{web.url}/twins/ada/write")
            await page.get_by_label("What should Ada write?").fill("Write about shipping")
            await page.get_by_role("button", name="Write", exact=True).click()

            await expect(page.locator("#answer-text")).to_have_text("Shipping small\nbeats waiting.")
            await expect(page.locator("#citations li")).to_have_text([
                "Ship it (the answer quotes 12 words of it word for word)", "Wait"])
            await expect(page.get_by_role("link", name="Ship it")).to_have_attribute(
                "href", "https://ada.example/posts/ship")
        finally:
            await browser.close()
