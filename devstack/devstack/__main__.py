"""`twin-stack run`: bring up the whole system on the embedded stack and carry a demo twin
through the loop (crawl → clean → embed → samples → training → champion → answer)."""
from __future__ import annotations

import json
import logging
import signal
import sys
import time

import httpx
import typer
from rich.console import Console
from rich.table import Table

from llmtwin.settings import Settings

from .demo import DEMO_PROMPT, follow_pipeline, seed_demo, wait_until_served
from .demo_sources import demo_blog, prepare_demo
from .stack import Stack

app = typer.Typer(add_completion=False, help=__doc__)
console = Console()
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
    for link, title in dict.fromkeys((c.get("link"), c.get("title")) for c in citations):  # a document once
        console.print(f"  - {title or link} ({link})")


@app.callback()
def stack() -> None:
    """The whole LLM Twin system on one machine."""


@app.command()
def run(demo: bool = typer.Option(True, help="Load the demo twin and carry it through the loop."),
        timeout: float = typer.Option(1800, help="Seconds to wait for the demo twin's champion."),
        demo_site_port: int = typer.Option(8010, help="Port of the local demo blog.")) -> None:
    """Start everything, load the demo twin, and keep running until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per status poll is noise
    settings = Settings()
    stack = Stack(settings)
    blog = demo_blog(settings, demo_site_port)
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
                                    prepare_demo(settings.data_dir / "demo"))
                console.print(f"[bold]Demo twin '{twin_id}' loaded; following it through the loop…[/]")
                reached = follow_pipeline(web, twin_id, timeout, report=console.print)
                champion = web.get(f"/api/twins/{twin_id}/status").json()["champion"]["version"]
            waited = wait_until_served(settings.inference_api_url, twin_id, champion, timeout)
            reached["champion answering"] = reached["champion promoted"] + waited
            console.print(f"  ✓ champion answering after {reached['champion answering']:.1f}s")
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
