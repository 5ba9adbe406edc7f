"""Run the embedder stage: `python -m twin_embedder` (settings from TWIN_* variables or .env)."""
from __future__ import annotations

from llmtwin.bus.stage import StageSpec, run_stage
from llmtwin.events import Topic
from llmtwin.settings import Settings

from .service import build_embedder


def main() -> None:
    settings = Settings()
    # Batches of documents: all their chunks go through the model in one call. The cleaner sends a
    # batch's documents at once, so a short wait gathers them; a batch that never fills (the last
    # of a burst) waits it out with the model idle (0.1 s cost the feature pipeline 0.18 core-s).
    # Two batches at once: the next is loaded, tokenized and chunked while the model finishes the
    # last, and the last's records and events go out meanwhile (~0.1 core-s idle at each boundary).
    run_stage(StageSpec(name="embedder", source=Topic.CLEAN_DOCS, port=settings.embedder_port,
                        build=build_embedder, batch_size=16, batch_within=0.02, in_flight=2), settings)


if __name__ == "__main__":
    main()
