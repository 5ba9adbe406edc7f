"""The model registry: MLflow 3, one registered model per twin, the alias `champion` marks the served one.

A model version is a plain folder logged as run artifacts: the LoRA adapter, the tokenizer
and `twin_model.json` naming the base model (see `models.TwinModelInfo`). Anything that can
read files can load it; `download_model` brings it to a local folder in any process.

Embedded: a SQLite store (`sqlite:////abs/mlflow.db`) and a local artifact folder.
At scale: an MLflow server URL; the same calls.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .domain import registered_model_name
from .settings import Settings

CHAMPION = "champion"
EXPERIMENT = "llm-twin-training"
MODEL_ARTIFACT_PATH = "twin_model"


class RegistryError(RuntimeError):
    """A registry request that cannot be served (unknown twin or version)."""


@dataclass(frozen=True)
class ModelVersionRef:
    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


# The champion is a model version that holds the alias.
ChampionRef = ModelVersionRef


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' store; returns the training experiment's id."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = settings.tracking_uri
    if uri.startswith("sqlite:"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    elif _is_local_store(uri):
        # A local store keeps artifacts in the embedded data folder, not in ./mlruns.
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(EXPERIMENT, artifact_location=settings.artifact_root.as_uri())
    else:
        experiment_id = client.create_experiment(EXPERIMENT)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _ref(mv) -> ModelVersionRef:
    return ModelVersionRef(name=mv.name, version=str(mv.version), run_id=mv.run_id or "", source=mv.source,
                           tags=dict(mv.tags or {}), aliases=tuple(getattr(mv, "aliases", ()) or ()))


def register_adapter(twin_id: str, model_dir: Path, *, run_id: str, tags: dict[str, str]) -> ModelVersionRef:
    """Log `model_dir` (adapter + tokenizer + twin_model.json) with the run and register it as a new version."""
    from mlflow.exceptions import MlflowException

    client = _client()
    name = registered_model_name(twin_id)
    client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)
    try:
        client.create_registered_model(name, tags={"twin_id": twin_id})
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT_PATH}"
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    return _ref(version)


def champion(twin_id: str) -> ChampionRef | None:
    from mlflow.exceptions import MlflowException

    try:
        return _ref(_client().get_model_version_by_alias(registered_model_name(twin_id), CHAMPION))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def get_version(twin_id: str, version: str | int) -> ModelVersionRef:
    from mlflow.exceptions import MlflowException

    name = registered_model_name(twin_id)
    try:
        return _ref(_client().get_model_version(name, str(version)))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc


def set_champion(twin_id: str, version: str | int) -> ModelVersionRef:
    """Give `version` the champion alias (promotion and rollback alike)."""
    ref = get_version(twin_id, version)
    _client().set_registered_model_alias(ref.name, CHAMPION, ref.version)
    return get_version(twin_id, version)


def list_versions(twin_id: str) -> list[ModelVersionRef]:
    """Every registered version of the twin's model, oldest first."""
    name = registered_model_name(twin_id)
    found = _client().search_model_versions(f"name = '{name}'")
    current = champion(twin_id)
    # Searches do not return aliases: mark the champion so listings show it.
    refs = [_ref(mv) for mv in found]
    refs = [replace(ref, aliases=(CHAMPION,)) if current and ref.version == current.version else ref
            for ref in refs]
    return sorted(refs, key=lambda ref: int(ref.version))


def download_model(twin_id: str, version_or_alias: str | int = CHAMPION, dst: Path | None = None) -> Path:
    """A local folder with the adapter, the tokenizer and twin_model.json. Read it, never write
    into it: with a local artifact store (and no `dst`) it is the registry's own copy."""
    import mlflow

    name = registered_model_name(twin_id)
    selector = str(version_or_alias)
    ref = get_version(twin_id, selector) if selector.isdigit() else None
    uri = f"models:/{name}/{ref.version}" if ref else f"models:/{name}@{selector}"
    if dst is not None:
        dst.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst) if dst else None)
    except Exception as exc:
        raise RegistryError(f"cannot download {uri}: {exc}") from exc
    return Path(local)
