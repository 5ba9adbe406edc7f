"""The demo corpus (samples/demo) turned into what a real user would hand over:
the LinkedIn export as a ZIP, the code folder as a git repository, the blog as a folder to serve."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from llmtwin.domain import Platform
from llmtwin.infra.process import LocalServer
from llmtwin.settings import Settings

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "demo"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Ada Quill", "GIT_AUTHOR_EMAIL": "ada@example.org",
                "GIT_COMMITTER_NAME": "Ada Quill", "GIT_COMMITTER_EMAIL": "ada@example.org"}


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return archive


def git_repository(source: Path, into: Path) -> Path:
    """A copy of `source` committed as a fresh git repository."""
    shutil.copytree(source, into, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    env = {**os.environ, **GIT_IDENTITY}
    for command in (["git", "init", "--quiet", "--initial-branch=main"], ["git", "add", "--all"],
                    ["git", "commit", "--quiet", "--message", "csvguard 0.3.0"]):
        subprocess.run(command, cwd=into, env=env, check=True, capture_output=True)
    return into


def prepare_demo(into: Path, samples: Path = SAMPLES) -> dict[Platform, str]:
    """Builds the demo's inputs under `into`; returns the URL to crawl for each platform but the blog
    (which is served over HTTP: `demo_blog`)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = zip_folder(samples / "linkedin", into / "linkedin-export.zip")
    repo = into / "csvguard"
    if repo.exists():
        shutil.rmtree(repo)
    git_repository(samples / "code", repo)
    return {Platform.LINKEDIN: archive.as_uri(), Platform.GITHUB: repo.as_uri()}


def demo_blog(settings: Settings, port: int, samples: Path = SAMPLES) -> LocalServer:
    """The sample blog served on loopback, as a person's own site would be on the web."""
    return LocalServer("demo-blog", [sys.executable, "-m", "http.server", str(port), "--bind", settings.host,
                                     "--directory", str(samples / "blog")],
                       settings.host, port, log_path=settings.data_dir / "logs" / "demo-blog.log")
