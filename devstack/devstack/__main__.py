"""`twin-stack run`: bring up the whole system on the embedded stack and carry a demo twin
through the loop (crawl → clean → embed → samples → training → champion → answer)."""
from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

from llmtwin.infra.process import LocalServer
from llmtwin.settings import Settings

from .stack import Stack, prepare_demo_sources

app = typer.Typer(add_completion=False, help=__doc__)
console = Console()
REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_TWIN = "Ada Quill"
DEMO_PROMPT = "Write a LinkedIn post about testing data pipelines before they reach production."

# Milestones of the loop, in order, as read from the web's status API.
MILESTONES = (
    ("crawled", lambda s: s["counts"]["raw_documents"] > 0 and all(j["state"] in ("succeeded", "failed") for j in s["crawl_jobs"])),
    ("cleaned", lambda s: s["counts"]["raw_documents"] > 0 and s["counts"]["clean_documents"] >= s["counts"]["raw_documents"]),
    ("embedded", lambda s: s["counts"]["chunk_records"] > 0 and s["counts"]["chunk_records"] >= s["counts"]["clean_documents"] - s["counts"].get("duplicates", 0)),
    ("samples built", lambda s: s["counts"]["instruct_samples"] > 0),
    ("dataset version cut", lambda s: s["counts"]["dataset_versions"] > 0),
    ("training job finished", lambda s: any(j["state"] in ("succeeded", "failed") for j in s["training_jobs"])),
    ("champion promoted", lambda s: s.get("champion") is not None),
)


def seed_demo(web: httpx.Client, blog_url: str, sources: dict[str, str]) -> str:
    twin = web.post("/api/twins", json={"name": DEMO_TWIN})
    if twin.status_code not in (200, 201, 409):
        twin.raise_for_status()
    twin_id = web.get("/api/twins").json()[0]["id"] if twin.status_code == 409 else twin.json()["id"]
    for platform, url in (("linkedin", sources["linkedin"]), ("blog", blog_url), ("github", sources["github"])):
        response = web.post(f"/api/twins/{twin_id}/profiles", json={"platform": platform, "url": url})
        if response.status_code not in (200, 201, 409):
            raise RuntimeError(f"adding the {platform} profile failed: {response.text}")
    web.post(f"/api/twins/{twin_id}/crawl").raise_for_status()
    return twin_id


def follow_pipeline(web: httpx.Client, twin_id: str, timeout: float) -> dict[str, float]:
    started, reached, status = time.monotonic(), {}, {}
    with console.status("waiting for the pipeline") as spinner:
        while len(reached) < len(MILESTONES):
            status = web.get(f"/api/twins/{twin_id}/status").json()
            for name, done in MILESTONES:
                if name not in reached and done(status):
                    reached[name] = time.monotonic() - started
                    console.print(f"  [green]✓[/] {name} after {reached[name]:.1f}s")
            pending = next(name for name, _ in MILESTONES if name not in reached) if len(reached) < len(MILESTONES) else ""
            spinner.update(f"waiting for: {pending}  ({json.dumps(status.get('counts', {}))})")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the demo twin did not reach '{pending}' in {timeout:.0f}s; status: {status}")
            time.sleep(1.0)
    return reached


def stream_answer(api_url: str, twin_id: str, prompt: str) -> None:
    body = {"model": twin_id, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    console.print(f"\n[bold]Prompt:[/] {prompt}\n[bold]Answer:[/] ", end="")
    citations = []
    with httpx.stream("POST", f"{api_url}/v1/chat/completions", json=body, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                console.print(choice.get("delta", {}).get("content") or "", end="", highlight=False)
            citations = chunk.get("citations") or citations
    console.print("\n[bold]Citations:[/]")
    for c in citations:
        console.print(f"  - {c.get('title') or c.get('link')} ({c.get('link')})")


@app.command()
def run(demo: bool = typer.Option(True, help="Load the demo twin and carry it through the loop."),
        timeout: float = typer.Option(1800, help="Seconds to wait for the demo twin's champion."),
        demo_site_port: int = typer.Option(8010, help="Port of the local demo blog.")) -> None:
    """Start everything, load the demo twin, and keep running until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    stack = Stack(settings)
    blog = LocalServer("demo-blog", [sys.executable, "-m", "http.server", str(demo_site_port), "--bind",
                                     settings.host, "--directory", str(REPO_ROOT / "samples" / "demo" / "blog")],
                       settings.host, demo_site_port, log_path=settings.data_dir / "logs" / "demo-blog.log")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        console.print("[bold]Starting the broker, the vector store and the services…[/]")
        stack.start()
        table = Table("service", "URL")
        for service in stack.services:
            table.add_row(service.name, stack.url(service))
        console.print(table)
        if demo:
            blog.start()
            with httpx.Client(base_url=f"http://{settings.host}:{settings.web_port}", timeout=30) as web:
                twin_id = seed_demo(web, f"http://{settings.host}:{demo_site_port}/",
                                    prepare_demo_sources(REPO_ROOT, settings))
                console.print(f"[bold]Demo twin '{twin_id}' loaded; following it through the loop…[/]")
                reached = follow_pipeline(web, twin_id, timeout)
            stream_answer(settings.inference_api_url, twin_id, DEMO_PROMPT)
            timings = Table("milestone", "seconds since crawl request")
            for name, seconds in reached.items():
                timings.add_row(name, f"{seconds:.1f}")
            console.print(timings)
        console.print(f"\n[bold green]LLM Twin is up.[/] Web page: http://{settings.host}:{settings.web_port}  "
                      f"API: {settings.inference_api_url}/docs   (Ctrl-C stops everything)")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("\nStopping…")
    finally:
        blog.stop()
        stack.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
