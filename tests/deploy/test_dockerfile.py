"""The service image recipe, linted without a Docker engine (dockerfile-parse reads it; the rules
are the hadolint ones that matter here), and every image's entry point found in the repo."""
from __future__ import annotations

import ast
import io
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

DOCKERFILE = "deploy/Dockerfile.service"
ROOT_USERS = {"root", "0", "0:0", "root:root"}


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str, int]] = field(default_factory=list)  # (instruction, value, line)
    env: dict[str, str] = field(default_factory=dict)


def substitute(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_stages(text: str, build_args: dict[str, str]) -> list[Stage]:
    """The stages with ARG, ENV and build arguments substituted as the builder would."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for item in DockerfileParser(fileobj=io.BytesIO(text.encode())).structure:
        instruction, value, line = item["instruction"], item["value"], item["startline"] + 1
        scope = stages[-1].env if stages else global_args
        if instruction == "FROM":
            image, _, name = substitute(value, {**global_args, **build_args}).partition(" AS ")
            stages.append(Stage(image.strip(), name.strip()))
        elif instruction == "ARG":
            arg, _, default = value.partition("=")
            scope[arg] = build_args.get(arg, global_args.get(arg, substitute(default, scope)))
        elif instruction == "ENV":
            for key, val in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', value):
                scope[key] = substitute(val.strip('"'), scope)
        if stages and instruction not in ("FROM", "COMMENT"):
            stages[-1].instructions.append((instruction, substitute(value, stages[-1].env), line))
    return stages


def copy_sources(value: str) -> list[str]:
    """The build-context paths of a COPY (none for COPY --from=another stage)."""
    parts = [part for part in value.split() if not part.startswith("--")]
    return [] if "--from=" in value else parts[:-1]


def lint(text: str, build_args: dict[str, str]) -> list[str]:
    problems: list[str] = []
    directives = [i for i, line in enumerate(text.splitlines()) if re.match(r"#\s*syntax\s*=", line)]
    if directives and directives != [0]:
        problems.append("the `# syntax=` directive only counts on the first line")
    stages = parse_stages(text, build_args)
    if len(stages) < 2:
        problems.append("not multi-stage: build tools end up in the runtime image")
    for stage in stages:
        last_part = stage.image.split("/")[-1]
        tag = last_part.rpartition(":")[2] if ":" in last_part else ""
        if "@sha256:" not in stage.image and (not tag or tag == "latest"):
            problems.append(f"FROM {stage.image}: pin a tag (not latest)")
        installed_deps_at = None
        for instruction, value, line in stage.instructions:
            if instruction == "ADD":
                problems.append(f"line {line}: ADD; use COPY (ADD fetches URLs and unpacks archives)")
            if instruction == "RUN" and "apt-get install" in value:
                if "--no-install-recommends" not in value:
                    problems.append(f"line {line}: apt-get install without --no-install-recommends")
                if "rm -rf /var/lib/apt/lists" not in value:
                    problems.append(f"line {line}: apt lists left in the layer (rm -rf /var/lib/apt/lists/*)")
            if instruction == "RUN" and "apt-get update" in value and "apt-get install" not in value:
                problems.append(f"line {line}: apt-get update in its own layer goes stale in the cache")
            installs_deps = instruction == "RUN" and "pip install" in value and "--no-deps" not in value
            if installs_deps and installed_deps_at is None:
                installed_deps_at = line
            if instruction == "COPY":
                code = [s for s in copy_sources(value) if not s.endswith(("pyproject.toml", "requirements.txt"))]
                if code and installed_deps_at is None and any("pip install" in v for i, v, _ in stage.instructions
                                                               if i == "RUN"):
                    problems.append(f"line {line}: source copied before the dependencies are installed; "
                                    "every code edit would reinstall them")
            if instruction in ("ENTRYPOINT", "CMD") and not value.lstrip().startswith("["):
                problems.append(f"line {line}: {instruction} in shell form; signals never reach the service")
    final = stages[-1] if stages else None
    users = [value for instruction, value, _ in final.instructions if instruction == "USER"] if final else []
    if not users or users[-1].strip() in ROOT_USERS:
        problems.append("the final stage runs as root: add USER with a non-root user")
    return problems


def entry_command(text: str, build_args: dict[str, str]) -> str:
    """The program the image's ENTRYPOINT executes."""
    final = parse_stages(text, build_args)[-1]
    entry = json.loads(next(value for instruction, value, _ in reversed(final.instructions)
                            if instruction == "ENTRYPOINT"))
    if entry[:2] == ["sh", "-c"]:
        program = re.search(r'exec\s+"?([^"\s]+)', entry[2]).group(1)
        return substitute(program, final.env)
    return entry[0]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether a context path is left out by .dockerignore patterns (the last matching pattern wins;
    a pattern that matches a parent folder matches everything in it)."""
    def matches(pattern: str) -> bool:
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        return any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1))
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if matches(pattern.lstrip("!")):
            verdict = not negated
    return verdict


@pytest.fixture(scope="module")
def dockerfile(repo) -> str:
    return (repo / DOCKERFILE).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def built_services(repo) -> dict[str, dict[str, str]]:
    """Compose service -> the build args of its image, for the base file and the GPU override."""
    builds = {}
    for file in ("docker-compose.yml", "deploy/compose.gpu.yml"):
        for name, spec in yaml.safe_load((repo / file).read_text())["services"].items():
            if "build" in spec:
                assert spec["build"]["dockerfile"] == DOCKERFILE
                builds[f"{file}:{name}"] = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v))
                                            for k, v in spec["build"].get("args", {}).items()}
    return builds


def test_the_service_image_passes_the_lint(dockerfile, built_services):
    for where, args in built_services.items():
        assert lint(dockerfile, args) == [], where


@pytest.mark.parametrize("bad, complaint", [
    ("FROM python:3.11-slim\nRUN pip install x\nUSER app\n", "not multi-stage"),
    ("FROM python:latest AS a\nFROM python AS b\nUSER app\n", "pin a tag"),
    ("FROM python:3.11 AS a\nFROM python:3.11-slim\nRUN echo\n", "runs as root"),
    ("FROM python:3.11 AS a\nFROM python:3.11-slim\nUSER 0\n", "runs as root"),
    (("FROM python:3.11 AS a\nFROM python:3.11-slim\n"
      "RUN apt-get update && apt-get install -y --no-install-recommends git\nUSER app\n"), "apt lists left"),
    (("FROM python:3.11 AS a\nFROM python:3.11-slim\nRUN apt-get update\n"
      "RUN apt-get install -y git && rm -rf /var/lib/apt/lists/*\nUSER app\n"), "--no-install-recommends"),
    ("FROM python:3.11 AS a\nFROM python:3.11-slim\nRUN apt-get update\nUSER app\n", "own layer"),
    ("FROM python:3.11 AS a\nCOPY src /src\nRUN pip install /src\nFROM python:3.11-slim\nUSER app\n",
     "source copied before the dependencies"),
    ("FROM python:3.11 AS a\nADD https://example.com/x.tgz /x\nFROM python:3.11-slim\nUSER app\n", "use COPY"),
    ("FROM python:3.11 AS a\nFROM python:3.11-slim\nUSER app\nENTRYPOINT twin-web\n", "shell form"),
    ("# a comment\n# syntax=docker/dockerfile:1.7\nFROM python:3.11 AS a\nFROM python:3.11-slim\nUSER app\n",
     "first line"),
])
def test_the_lint_catches_what_it_checks(bad, complaint):
    assert any(complaint in problem for problem in lint(bad, {})), lint(bad, {})


def test_every_image_entry_point_is_a_console_script_of_its_service(repo, dockerfile, built_services):
    for where, args in built_services.items():
        service = args["SERVICE"]
        project = tomllib.loads((repo / "services" / service / "pyproject.toml").read_text())
        command = entry_command(dockerfile, args)
        scripts = project["project"]["scripts"]
        assert command in scripts, f"{where}: {command} is not a console script of services/{service}"
        module, _, function = scripts[command].partition(":")
        source = repo / "services" / service / Path(*module.split(".")).with_suffix(".py")
        assert source.exists(), f"{where}: {scripts[command]} points at a missing module"
        names = {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert function in names, f"{where}: {source} has no {function}()"


def test_the_entry_point_follows_the_build_argument(dockerfile):
    assert entry_command(dockerfile, {"SERVICE": "web"}) == "twin-web"
    assert entry_command(dockerfile, {"SERVICE": "inference-api"}) == "twin-inference-api"


def test_every_copied_source_is_in_the_repo_and_the_build_context(repo, repo_files, dockerfile, built_services):
    patterns = [line.strip() for line in (repo / f"{DOCKERFILE}.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for where, args in built_services.items():
        for stage in parse_stages(dockerfile, args):
            for instruction, value, line in stage.instructions:
                for source in copy_sources(value) if instruction == "COPY" else []:
                    files = [f for f in repo_files if f == source or f.startswith(f"{source}/")]
                    assert files, f"{where}, line {line}: {source} is not in the repository"
                    left_out = [f for f in files if "tests" not in f.split("/") and ignored(f, patterns)]
                    assert files and not left_out, f"{where}, line {line}: .dockerignore leaves out {left_out}"


def test_the_ignore_file_keeps_the_context_small(repo):
    patterns = [line.strip() for line in (repo / f"{DOCKERFILE}.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".venv/bin/python", ".data/warehouse.db", "services/web/tests/test_app.py",
                 "libs/common/llmtwin/__pycache__/x.pyc", "tests/e2e/test_loop.py"):
        assert ignored(path, patterns), path
    assert not ignored("services/web/twin_web/templates/base.html", patterns)


def test_package_data_of_every_service_reaches_its_wheel(repo, repo_files):
    """Files that are not Python (templates, static files) are declared, or the image lacks them."""
    for project_dir in [repo / "libs/common", *sorted((repo / "services").iterdir())]:
        project = tomllib.loads((project_dir / "pyproject.toml").read_text())
        declared = project.get("tool", {}).get("setuptools", {}).get("package-data", {})
        for package_dir in [p for p in project_dir.iterdir() if p.is_dir() and (p / "__init__.py").exists()]:
            prefix = f"{package_dir.relative_to(repo)}/"
            for file in sorted(f for f in repo_files if f.startswith(prefix) and not f.endswith(".py")):
                relative = Path(file.removeprefix(prefix))
                patterns = declared.get(package_dir.name, []) + declared.get("*", [])
                assert any(relative.match(pattern) for pattern in patterns), \
                    f"{file} is not in [tool.setuptools.package-data] of {project_dir.name}"
