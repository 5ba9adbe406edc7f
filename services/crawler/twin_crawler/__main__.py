"""`twin-crawler serve` runs the stage; `twin-crawler crawl ...` runs one crawl here and prints its counts."""
from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from llmtwin.domain import CrawlJob, JobState, Platform, Profile
from llmtwin.events import CrawlRequested
from llmtwin.settings import Settings

app = typer.Typer(help="The crawler service: crawl requests in, raw documents and raw_docs events out.",
                  no_args_is_help=True)
console = Console()


@app.command()
def serve() -> None:
    """Run the crawler stage on the bus (serves /metrics and /healthz on the crawler port)."""
    from llmtwin.bus.stage import run_stage

    from .service import stage_spec

    settings = Settings()
    run_stage(stage_spec(settings), settings)


async def crawl_once(settings: Settings, request: CrawlRequested, publish: bool, progress: Progress) -> CrawlJob:
    from llmtwin.bus.producer import EventProducer

    from .service import build_processor

    processor = await build_processor(settings)
    task = progress.add_task("storing", total=None)
    try:
        events = await processor.crawl(
            request, on_progress=lambda job, total: progress.update(task, completed=job.found, total=total))
        if publish and events:
            producer = await EventProducer(settings).start()
            try:
                for event in events:
                    await producer.send(event)
            finally:
                await producer.stop()
        job = await processor.jobs.get(request.id)
    finally:
        await processor.close()
    assert job is not None
    return job


def job_table(job: CrawlJob, sent: bool) -> Table:
    table = Table(title=f"crawl {job.platform.value} {job.url}")
    for column in ("state", "found", "stored", "skipped", "failed"):
        table.add_column(column, justify="right")
    table.add_row(job.state.value, str(job.found), str(job.stored), str(job.skipped), str(job.failed))
    table.caption = "raw_docs events sent for stored documents" if sent else "no events sent"
    return table


@app.command()
def crawl(twin: str = typer.Option(..., help="the twin's id"),
          platform: Platform = typer.Option(..., help="where the writing comes from"),
          url: str = typer.Option(..., help="profile URL, feed, repository, or export archive (.zip, folder)"),
          publish: bool = typer.Option(True, help="send raw_docs events to the bus for what was stored")) -> None:
    """Crawl one profile now: store raw documents in the warehouse and announce them on the bus."""
    settings = Settings()
    profile = Profile.of(twin, platform, url)
    request = CrawlRequested.now(twin, profile.id, platform, url)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        job = asyncio.run(crawl_once(settings, request, publish, progress))
    console.print(job_table(job, publish and job.stored > 0))
    for error in job.errors:
        console.print(f"[red]•[/red] {error}")
    if job.state is JobState.FAILED:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
