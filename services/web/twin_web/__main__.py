"""`python -m twin_web` (or `twin-web`): the web page on settings.host:settings.web_port."""
from __future__ import annotations

import uvicorn

from llmtwin.settings import Settings

from .app import create_app


def main() -> None:
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.web_port, log_level="info")


if __name__ == "__main__":
    main()
