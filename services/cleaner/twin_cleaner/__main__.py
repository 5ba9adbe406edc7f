"""Run the cleaner stage: `python -m twin_cleaner` (settings from TWIN_* variables or .env)."""
from __future__ import annotations

from llmtwin.bus.stage import StageSpec, run_stage
from llmtwin.events import Topic
from llmtwin.settings import Settings

from .service import build_cleaner


def main() -> None:
    settings = Settings()
    run_stage(StageSpec(name="cleaner", source=Topic.RAW_DOCS, port=settings.cleaner_port,
                        build=build_cleaner, batch_size=16), settings)


if __name__ == "__main__":
    main()
