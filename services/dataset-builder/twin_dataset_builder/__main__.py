"""Run the dataset-builder stage: `python -m twin_dataset_builder` (settings from TWIN_* and .env)."""
from __future__ import annotations

from llmtwin.bus.stage import run_stage
from llmtwin.settings import Settings

from .service import dataset_builder_spec


def main() -> None:
    settings = Settings()
    run_stage(dataset_builder_spec(settings), settings)


if __name__ == "__main__":
    main()
