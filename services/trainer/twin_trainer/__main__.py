"""`twin-trainer`: the trainer service's commands.

    twin-trainer serve                          the trigger: counts new samples, starts training jobs
    twin-trainer job --job-id ID                one training job (what the trigger starts: a subprocess or a container)
    twin-trainer rollback --twin T --version N  move the champion back to an earlier version
    twin-trainer prepare-base                   fetch and convert the default base model once
"""
from __future__ import annotations

import logging

import typer
from llmtwin.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="LLM Twin trainer")


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


@app.callback()
def _main(ctx: typer.Context) -> None:
    # Settings are read once here and handed to whichever command runs.
    ctx.obj = Settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s trainer %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(ctx: typer.Context) -> None:
    """Run the trigger stage over `instruct_samples`."""
    from llmtwin.bus.stage import run_stage

    from .trigger import trigger_spec

    settings = _settings(ctx)
    run_stage(trigger_spec(settings), settings)


@app.command()
def job(ctx: typer.Context, job_id: str = typer.Option(..., "--job-id", help="id of a TrainingJob")) -> None:
    """Run one training job to its end; exit status 1 when it failed."""
    from llmtwin.domain import JobState

    from .job import run_job

    result = run_job(_settings(ctx), job_id)
    typer.echo(f"job {result.id}: {result.state.value}: {result.message}")
    if result.state != JobState.SUCCEEDED:
        raise typer.Exit(code=1)


@app.command()
def rollback(ctx: typer.Context, twin: str = typer.Option(..., "--twin", help="twin id"),
             version: str = typer.Option(..., "--version", help="model version to make champion again")) -> None:
    """Give the champion alias back to an earlier version and announce it on model_events."""
    from llmtwin.registry import RegistryError

    from .job import rollback as do_rollback

    try:
        event = do_rollback(_settings(ctx), twin, version)
    except RegistryError as exc:
        typer.echo(f"rollback refused: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"{event.model_name}: champion is now version {event.version}")


@app.command("prepare-base")
def prepare_base(ctx: typer.Context) -> None:
    """Resolve the configured base model, fetching and converting it if needed."""
    from llmtwin.models import BaseModelError, resolve_base_model

    try:
        typer.echo(resolve_base_model(_settings(ctx)))
    except BaseModelError as exc:
        typer.echo(f"base model unavailable: {exc}", err=True)
        raise typer.Exit(code=1) from exc


def main() -> None:
    app(prog_name="twin-trainer")


if __name__ == "__main__":
    main()
