"""Run the inference API: `python -m twin_inference` (or `twin-inference-api`)."""
from __future__ import annotations

import logging


def main() -> None:
    import uvicorn
    from llmtwin.settings import Settings

    from .app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.api_port, workers=1, access_log=False)


if __name__ == "__main__":
    main()
