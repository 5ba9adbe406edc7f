"""The embedded vector store's engine: Qdrant collections kept as qdrant-edge shards on disk.

qdrant-edge (PyPI `qdrant-edge-py`) is Qdrant's own Rust engine run in process: the same
segments, write-ahead log, payload indexes and filtering as a Qdrant server, so a filtered
search over 20k points takes milliseconds (qdrant-client's local mode, which this replaces,
ran filters in Python: hundreds of milliseconds). A shard is one collection's data; this
module keeps one per collection, records what the engine does not (the collection's vector
parameters and metadata), and translates qdrant-client's REST models to and from the
engine's types, so the server in front of it stays a thin HTTP layer.

    <path>/edge.lock                        held by the one process that owns the folder
    <path>/collections/<name>/config.json   the collection's vector parameters and metadata
    <path>/collections/<name>/shard/        the engine's segments and write-ahead log

Collections that qdrant-client's local mode left in the folder (`meta.json`, `collection/`)
are copied in when the store opens, then moved aside to `<path>/local-mode-imported/`.

Searches are exact: no HNSW graph is built, because building one (`EdgeShard.optimize`)
blocks every other call on the shard for about 20 s at 20k points of 384 dimensions, and an
exact search filtered through a payload index takes a few milliseconds at that size. A
store that grows to hundreds of thousands of chunks belongs on a Qdrant server.

Every method is synchronous and the engine holds the GIL while it works, so the caller
runs one call at a time (the server calls it from its event loop).
"""
from __future__ import annotations

import fcntl
import json
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import qdrant_edge as edge
from qdrant_client import QdrantClient
from qdrant_client.http import models

# Collection names become folder names: nothing that could leave the folder or hide in it.
COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")
FLUSH_INTERVAL_S = 5  # as a Qdrant server: how often the write-ahead log is folded into the segments
# No optimizer runs, so a shard stays one segment, which one thread searches: a bigger pool only
# adds hand-offs between threads (p99 went from about 10 to 7.6 ms on 2 busy cores, 20k points).
SEARCH_THREADS = 1
COMPLETED = models.UpdateResult(status=models.UpdateStatus.COMPLETED)

DISTANCES = {models.Distance.COSINE: edge.Distance.Cosine, models.Distance.DOT: edge.Distance.Dot,
             models.Distance.EUCLID: edge.Distance.Euclid, models.Distance.MANHATTAN: edge.Distance.Manhattan}
SCHEMA_TYPES = {getattr(edge.PayloadSchemaType, t.value.capitalize()): t for t in models.PayloadSchemaType}
UPDATE_MODES = {models.UpdateMode.UPSERT: edge.UpdateMode.Upsert,
                models.UpdateMode.INSERT_ONLY: edge.UpdateMode.InsertOnly,
                models.UpdateMode.UPDATE_ONLY: edge.UpdateMode.UpdateOnly}
DIRECTIONS = {models.Direction.ASC: edge.Direction.Asc, models.Direction.DESC: edge.Direction.Desc}


class CollectionNotFound(LookupError):
    pass


class CollectionAlreadyExists(ValueError):
    pass


class StoreInUse(RuntimeError):
    pass


@dataclass
class Collection:
    vectors: models.VectorParams
    metadata: dict[str, Any] | None
    shard: edge.EdgeShard
    unflushed: bool = False

    @classmethod
    def load(cls, folder: Path) -> Collection:
        config = json.loads((folder / "config.json").read_text())
        vectors = models.VectorParams.model_validate(config["vectors"])
        return cls(vectors, config["metadata"], edge.EdgeShard.load(str(folder / "shard"), _edge_config(vectors)))


class EdgeStore:
    """The collections under one folder, which only this store may open while it runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._collections: dict[str, Collection] = {}
        self._lock_file = None

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> EdgeStore:
        (self.path / "collections").mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path / "edge.lock", "a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise StoreInUse(f"{self.path} is in use by another process") from None
        for folder in sorted((self.path / "collections").iterdir()):
            if (folder / "config.json").is_file():
                self._collections[folder.name] = Collection.load(folder)
        self._import_local_mode()
        return self

    def flush(self) -> None:
        """Write what the write-ahead log holds into the segments, for the collections written since."""
        for collection in self._collections.values():
            if collection.unflushed:
                collection.shard.flush()
                collection.unflushed = False

    def close(self) -> None:
        self.flush()
        for collection in self._collections.values():
            collection.shard.close()
        self._collections.clear()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock

    def _import_local_mode(self) -> None:
        """Copy in the collections of qdrant-client's local mode, this store's engine before qdrant-edge."""
        if not (self.path / "meta.json").is_file():
            return
        old = QdrantClient(path=str(self.path))
        try:
            for name in (c.name for c in old.get_collections().collections):
                config = old.get_collection(name).config
                self.delete(name)  # what an import that stopped half-way left
                self.create(name, models.CreateCollection(vectors=config.params.vectors, metadata=config.metadata))
                offset = None
                while True:
                    records, offset = old.scroll(name, limit=1000, offset=offset, with_payload=True, with_vectors=True)
                    self.upsert(name, models.PointsList(points=[
                        models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in records]))
                    if offset is None:
                        break
        finally:
            old.close()
        self.flush()
        imported = self.path / "local-mode-imported"
        imported.mkdir(exist_ok=True)
        for leftover in ("meta.json", "collection"):  # meta.json first: it marks an import still to do
            if (self.path / leftover).exists():
                (self.path / leftover).rename(imported / leftover)

    # --- collections -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._collections)

    def exists(self, name: str) -> bool:
        return name in self._collections

    def create(self, name: str, spec: models.CreateCollection) -> bool:
        if not COLLECTION_NAME.fullmatch(name):
            raise ValueError(f"Wrong input: collection name {name!r} may hold only letters, digits, _ - .")
        if name in self._collections:
            raise CollectionAlreadyExists(f"Collection `{name}` already exists!")
        vectors = spec.vectors
        if not isinstance(vectors, models.VectorParams) or vectors.multivector_config or spec.sparse_vectors:
            raise ValueError("Wrong input: the local store keeps one unnamed dense vector per point")
        folder = self.path / "collections" / name
        shutil.rmtree(folder, ignore_errors=True)  # what a creation that never finished left behind
        shard = edge.EdgeShard.create(str(folder / "shard"), _edge_config(vectors))
        # config.json is written last: a folder without it is a creation that never finished.
        config = {"vectors": vectors.model_dump(mode="json", exclude_none=True), "metadata": spec.metadata}
        (folder / "config.json").write_text(json.dumps(config))
        self._collections[name] = Collection(vectors, spec.metadata, shard)
        return True

    def delete(self, name: str) -> bool:
        collection = self._collections.pop(name, None)
        if collection is None:
            return False
        collection.shard.close()
        shutil.rmtree(self.path / "collections" / name)
        return True

    def info(self, name: str) -> models.CollectionInfo:
        collection = self._get(name)
        with _engine_errors():
            info = collection.shard.info()
        return models.CollectionInfo(
            status=models.CollectionStatus.GREEN, optimizer_status=models.OptimizersStatusOneOf.OK,
            points_count=info.points_count, indexed_vectors_count=info.indexed_vectors_count,
            segments_count=info.segments_count,
            payload_schema={key: models.PayloadIndexInfo(data_type=SCHEMA_TYPES[index.data_type], points=index.points)
                            for key, index in info.payload_schema.items()},
            config=models.CollectionConfig(
                params=models.CollectionParams(vectors=collection.vectors),
                # In Qdrant's terms: no HNSW graph (m=0), vector indexing disabled (threshold 0).
                hnsw_config=models.HnswConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
                optimizer_config=models.OptimizersConfig(default_segment_number=0, indexing_threshold=0,
                                                         flush_interval_sec=FLUSH_INTERVAL_S),
                metadata=collection.metadata))

    def create_index(self, name: str, spec: models.CreateFieldIndex) -> models.UpdateResult:
        schema = spec.field_schema
        if schema is None:
            raise ValueError("Wrong input: a payload index needs a field_schema")
        # Index parameters (is_tenant, on_disk...) tune a server's storage; only the type matters here.
        schema_type = models.PayloadSchemaType(schema if isinstance(schema, str) else schema.type.value)
        operation = edge.UpdateOperation.create_field_index(
            spec.field_name, getattr(edge.PayloadSchemaType, schema_type.value.capitalize()))
        return self._update(name, operation)

    # --- points ------------------------------------------------------------------------------

    def upsert(self, name: str, spec: models.PointsList | models.PointsBatch) -> models.UpdateResult:
        size = self._get(name).vectors.size
        if isinstance(spec, models.PointsList):
            points = [edge.Point(p.id, _dense(p.vector, size), p.payload) for p in spec.points]
        else:
            batch = spec.batch
            if not isinstance(batch.vectors, list):
                raise ValueError("Wrong input: the local store keeps one unnamed dense vector per point")
            payloads = batch.payloads or [None] * len(batch.ids)
            if not len(batch.ids) == len(batch.vectors) == len(payloads):
                raise ValueError("Wrong input: a batch needs as many vectors and payloads as ids")
            points = [edge.Point(i, _dense(v, size), p) for i, v, p in zip(batch.ids, batch.vectors, payloads)]
        mode = UPDATE_MODES[spec.update_mode] if spec.update_mode else None
        return self._update(name, edge.UpdateOperation.upsert_points(points, _filter(spec.update_filter), mode))

    def delete_points(self, name: str, selector: models.PointIdsList | models.FilterSelector) -> models.UpdateResult:
        if isinstance(selector, models.PointIdsList):
            return self._update(name, edge.UpdateOperation.delete_points(selector.points))
        return self._update(name, edge.UpdateOperation.delete_points_by_filter(_filter(selector.filter)))

    def retrieve(self, name: str, spec: models.PointRequest) -> list[models.Record]:
        shard = self._get(name).shard
        with _engine_errors():
            records = shard.retrieve(spec.ids, _with_payload(spec.with_payload, True), _with_vector(spec.with_vector))
        return [_record(r) for r in records]

    def scroll(self, name: str, spec: models.ScrollRequest) -> models.ScrollResult:
        shard = self._get(name).shard
        request = edge.ScrollRequest(
            offset=spec.offset, limit=10 if spec.limit is None else spec.limit, filter=_filter(spec.filter),
            with_payload=_with_payload(spec.with_payload, True), with_vector=_with_vector(spec.with_vector),
            order_by=_order_by(spec.order_by))
        with _engine_errors():
            records, next_offset = shard.scroll(request)
        return models.ScrollResult(points=[_record(r) for r in records], next_page_offset=_point_id(next_offset))

    def count(self, name: str, spec: models.CountRequest) -> models.CountResult:
        shard = self._get(name).shard
        with _engine_errors():
            count = shard.count(edge.CountRequest(exact=spec.exact is not False, filter=_filter(spec.filter)))
        return models.CountResult(count=count)

    def query(self, name: str, spec: models.QueryRequest) -> models.QueryResponse:
        collection = self._get(name)
        if spec.prefetch or spec.lookup_from or spec.using:
            raise ValueError("Wrong input: the local store answers plain nearest-vector queries only")
        params = spec.params
        request = edge.QueryRequest(
            limit=10 if spec.limit is None else spec.limit, offset=spec.offset,
            query=_nearest(spec.query, collection.vectors.size), filter=_filter(spec.filter),
            score_threshold=spec.score_threshold,
            params=edge.SearchParams(hnsw_ef=params.hnsw_ef, exact=bool(params.exact),
                                     indexed_only=bool(params.indexed_only)) if params else None,
            with_payload=_with_payload(spec.with_payload, False), with_vector=_with_vector(spec.with_vector))
        with _engine_errors():
            found = collection.shard.query(request)
        return models.QueryResponse(points=[
            models.ScoredPoint(id=_point_id(p.id), version=p.version, score=p.score, payload=p.payload,
                               vector=p.vector, order_value=p.order_value) for p in found])

    def _get(self, name: str) -> Collection:
        try:
            return self._collections[name]
        except KeyError:
            raise CollectionNotFound(f"Not found: Collection `{name}` doesn't exist!") from None

    def _update(self, name: str, operation: edge.UpdateOperation) -> models.UpdateResult:
        collection = self._get(name)
        with _engine_errors():
            collection.shard.update(operation)  # applied (and in the write-ahead log) when it returns
        collection.unflushed = True
        return COMPLETED


def _edge_config(vectors: models.VectorParams) -> edge.EdgeConfig:
    return edge.EdgeConfig(vectors=edge.EdgeVectorParams(size=vectors.size, distance=DISTANCES[vectors.distance]),
                           max_search_threads=SEARCH_THREADS)


@contextmanager
def _engine_errors() -> Iterator[None]:
    """The engine raises a bare Exception both for input it rejects and for its own faults;
    like a Qdrant server, answer the first as a bad request (ValueError) and only the second as a fault."""
    try:
        yield
    except (ValueError, TypeError) as exc:  # ids and values the bindings cannot convert
        raise ValueError(f"Wrong input: {exc}") from exc
    except Exception as exc:
        if type(exc) is Exception and not str(exc).startswith("Service"):
            raise ValueError(str(exc)) from exc
        raise


def _dense(vector: Any, size: int) -> list[float]:
    if isinstance(vector, dict) and set(vector) == {""}:
        vector = vector[""]
    if not isinstance(vector, list) or (vector and not isinstance(vector[0], float)):
        raise ValueError("Wrong input: the local store keeps one unnamed dense vector per point")
    if len(vector) != size:
        raise ValueError(f"Wrong input: Vector dimension error: expected dim: {size}, got {len(vector)}")
    return vector


def _nearest(query: Any, size: int) -> edge.Query | None:
    if query is None:
        return None
    if isinstance(query, models.NearestQuery) and query.mmr is None:
        query = query.nearest
    if not isinstance(query, list):
        raise ValueError("Wrong input: the local store answers plain nearest-vector queries only")
    return edge.Query.Nearest(_dense(query, size))


def _point_id(value: Any) -> int | str | None:
    return str(value) if isinstance(value, uuid.UUID) else value


def _record(record: edge.Record) -> models.Record:
    return models.Record(id=_point_id(record.id), payload=record.payload, vector=record.vector,
                         order_value=record.order_value)


def _with_payload(value: Any, default: bool) -> Any:
    if value is None:
        return default
    if isinstance(value, models.PayloadSelectorInclude):
        return edge.PayloadSelector.Include(value.include)
    if isinstance(value, models.PayloadSelectorExclude):
        return edge.PayloadSelector.Exclude(value.exclude)
    return value


def _with_vector(value: bool | list[str] | None) -> bool | list[str]:
    return False if value is None else value


def _order_by(value: str | models.OrderBy | None) -> edge.OrderBy | None:
    if value is None:
        return None
    if isinstance(value, str):
        return edge.OrderBy(value)
    start = value.start_from.isoformat() if isinstance(value.start_from, (datetime, date)) else value.start_from
    return edge.OrderBy(value.key, DIRECTIONS[value.direction] if value.direction else None, start)


# --- filters -----------------------------------------------------------------------------------

def _filter(value: models.Filter | None) -> edge.Filter | None:
    if value is None:
        return None
    min_should = (edge.MinShould(_conditions(value.min_should.conditions), value.min_should.min_count)
                  if value.min_should else None)
    return edge.Filter(must=_conditions(value.must), should=_conditions(value.should),
                       must_not=_conditions(value.must_not), min_should=min_should)


def _conditions(value: Sequence[Any] | Any | None) -> list[Any] | None:
    if value is None:
        return None
    return [_condition(c) for c in (value if isinstance(value, list) else [value])]


def _condition(condition: Any) -> Any:
    match condition:
        case models.FieldCondition():
            return _field_condition(condition)
        case models.HasIdCondition():
            return edge.HasIdCondition(set(condition.has_id))
        case models.IsEmptyCondition():
            return edge.IsEmptyCondition(condition.is_empty.key)
        case models.IsNullCondition():
            return edge.IsNullCondition(condition.is_null.key)
        case models.HasVectorCondition():
            return edge.HasVectorCondition(condition.has_vector)
        case models.NestedCondition():
            return edge.NestedCondition(condition.nested.key, _filter(condition.nested.filter))
        case models.Filter():
            return _filter(condition)
    raise ValueError(f"Wrong input: the local store cannot filter on {type(condition).__name__}")


def _field_condition(condition: models.FieldCondition) -> edge.FieldCondition:
    if condition.geo_bounding_box or condition.geo_radius or condition.geo_polygon:
        raise ValueError("Wrong input: the local store has no geo filters")
    values_count = (edge.ValuesCount(**condition.values_count.model_dump(exclude_none=True))
                    if condition.values_count else None)
    return edge.FieldCondition(condition.key, match=_match(condition.match), range=_range(condition.range),
                               values_count=values_count, is_empty=condition.is_empty, is_null=condition.is_null)


def _match(match: Any) -> Any:
    match match:
        case None:
            return None
        case models.MatchValue():
            return edge.MatchValue(match.value)
        case models.MatchAny():
            return edge.MatchAny(match.any)
        case models.MatchExcept():
            return edge.MatchExcept(match.except_)
        case models.MatchText():
            return edge.MatchText(match.text)
        case models.MatchTextAny():
            return edge.MatchTextAny(match.text_any)
        case models.MatchPhrase():
            return edge.MatchPhrase(match.phrase)
        case models.MatchPrefix():
            return edge.MatchPrefix(match.prefix)
    raise ValueError(f"Wrong input: the local store cannot match with {type(match).__name__}")


def _range(value: models.Range | models.DatetimeRange | None) -> Any:
    if value is None:
        return None
    bounds = value.model_dump(exclude_none=True)
    if isinstance(value, models.DatetimeRange):
        return edge.RangeDateTime(**{k: v.isoformat() for k, v in bounds.items()})
    return edge.RangeFloat(**bounds)
