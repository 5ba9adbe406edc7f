"""The local Qdrant server's REST surface, through qdrant-client, against the real server process."""
from __future__ import annotations

import uuid

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models
from qdrant_client.http.exceptions import UnexpectedResponse

from llmtwin.infra.process import free_port
from llmtwin.infra.qdrant_server import qdrant_local

VECTORS = models.VectorParams(size=4, distance=models.Distance.COSINE)


def point(number: int, vector: list[float], **payload) -> models.PointStruct:
    return models.PointStruct(id=str(uuid.UUID(int=number)), vector=vector, payload={"number": number, **payload})


@pytest.fixture
def client(qdrant_url) -> QdrantClient:
    qdrant = QdrantClient(url=qdrant_url, timeout=10)
    yield qdrant
    qdrant.close()


@pytest.fixture
def filled(client) -> str:
    """A collection of ten points: numbers 0-9, twin ada for even numbers and grace for odd ones."""
    client.create_collection("points", vectors_config=VECTORS, metadata={"purpose": "tests"})
    client.create_payload_index("points", "twin", field_schema=models.PayloadSchemaType.KEYWORD, wait=True)
    client.create_payload_index("points", "number", field_schema=models.PayloadSchemaType.INTEGER, wait=True)
    client.upsert("points", points=[point(n, [1.0, float(n), 0.0, 0.0], twin="grace" if n % 2 else "ada")
                                    for n in range(10)], wait=True)
    return "points"


def numbers(records) -> list[int]:
    return [r.payload["number"] for r in records]


def test_scroll_pages_through_every_point_once_and_retrieve_returns_vectors(client, filled):
    seen, offset = [], None
    while True:
        page, offset = client.scroll(filled, limit=3, offset=offset, with_payload=True)
        assert len(page) <= 3
        seen += numbers(page)
        if offset is None:
            break
    assert sorted(seen) == list(range(10))

    ordered, _ = client.scroll(filled, limit=4, order_by=models.OrderBy(key="number", direction="desc"))
    assert numbers(ordered) == [9, 8, 7, 6]

    [record] = client.retrieve(filled, [str(uuid.UUID(int=3)), str(uuid.UUID(int=99))], with_vectors=True)
    assert record.id == str(uuid.UUID(int=3)) and record.payload == {"number": 3, "twin": "grace"}
    assert record.vector == pytest.approx([0.316228, 0.948683, 0, 0], abs=1e-5)  # cosine: stored unit length


def test_filters_combine_as_in_qdrant(client, filled):
    def matching(query_filter: models.Filter) -> list[int]:
        return sorted(numbers(client.scroll(filled, scroll_filter=query_filter, limit=100)[0]))

    grace = models.FieldCondition(key="twin", match=models.MatchValue(value="grace"))
    small = models.FieldCondition(key="number", range=models.Range(lt=5))
    assert matching(models.Filter(must=[grace, small])) == [1, 3]
    assert matching(models.Filter(must=[grace], must_not=[small])) == [5, 7, 9]
    assert matching(models.Filter(should=[grace, small])) == [0, 1, 2, 3, 4, 5, 7, 9]
    assert matching(models.Filter(must=[models.FieldCondition(key="number", match=models.MatchAny(any=[2, 8]))])) \
        == [2, 8]
    assert matching(models.Filter(must=[models.FieldCondition(key="twin", match=models.MatchExcept(**{
        "except": ["ada"]}))])) == [1, 3, 5, 7, 9]
    assert matching(models.Filter(must=[models.HasIdCondition(has_id=[str(uuid.UUID(int=4))])])) == [4]
    assert matching(models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="twin"))])) == []
    assert matching(models.Filter(min_should=models.MinShould(conditions=[grace, small], min_count=2))) == [1, 3]
    assert client.count(filled, count_filter=models.Filter(must=[grace]), exact=True).count == 5


def test_query_ranks_filters_thresholds_and_pages(client, filled):
    def nearest(**options) -> list[int]:
        return numbers(client.query_points(filled, query=[0.0, 1.0, 0.0, 0.0], with_payload=True, **options).points)

    assert nearest(limit=3) == [9, 8, 7]
    assert nearest(limit=3, offset=2) == [7, 6, 5]
    assert nearest(limit=3, query_filter=models.Filter(must=[
        models.FieldCondition(key="twin", match=models.MatchValue(value="ada"))])) == [8, 6, 4]
    assert nearest(limit=10, score_threshold=0.95) == [9, 8, 7, 6, 5, 4]  # cos(atan(n)) >= 0.95 from n=4
    best = client.query_points(filled, query=[0.0, 1.0, 0.0, 0.0], limit=1, with_payload=False,
                               with_vectors=True).points[0]
    assert best.id == str(uuid.UUID(int=9)) and best.payload is None
    assert best.score == pytest.approx(9 / 82 ** 0.5, abs=1e-6)
    assert best.vector == pytest.approx([1 / 82 ** 0.5, 9 / 82 ** 0.5, 0, 0], abs=1e-6)


def test_collection_info_shows_points_indexes_and_metadata_and_delete_removes_it(client, filled):
    info = client.get_collection(filled)
    assert info.points_count == 10
    assert info.config.params.vectors == VECTORS
    assert info.config.metadata == {"purpose": "tests"}
    assert {key: index.data_type for key, index in info.payload_schema.items()} == {
        "twin": models.PayloadSchemaType.KEYWORD, "number": models.PayloadSchemaType.INTEGER}

    client.delete(filled, points_selector=models.PointIdsList(points=[str(uuid.UUID(int=0))]), wait=True)
    assert client.count(filled).count == 9
    with pytest.raises(UnexpectedResponse) as again:
        client.create_collection(filled, vectors_config=VECTORS)
    assert again.value.status_code == 409

    assert client.delete_collection(filled) is True
    assert client.collection_exists(filled) is False
    assert client.delete_collection(filled) is False
    client.create_collection(filled, vectors_config=VECTORS)  # the name is free again, and empty
    assert client.count(filled).count == 0


def test_requests_beyond_what_the_store_serves_are_refused_as_bad_requests(client, filled):
    refused = [
        lambda: client.create_collection("named", vectors_config={"text": VECTORS}),
        lambda: client.create_collection("no good", vectors_config=VECTORS),
        lambda: client.upsert(filled, points=[models.PointStruct(id="not-a-uuid", vector=[1.0, 0, 0, 0])]),
        lambda: client.query_points(filled, prefetch=[models.Prefetch(query=[1.0, 0, 0, 0])], query=[1.0, 0, 0, 0]),
        lambda: client.query_points(filled, query=[1.0, 0.0]),
        lambda: client.scroll(filled, order_by="twin"),  # ordering needs a numeric index
    ]
    for request in refused:
        with pytest.raises(UnexpectedResponse) as refusal:
            request()
        assert refusal.value.status_code == 400, refusal.value.content
    assert client.get_collections().collections == [models.CollectionDescription(name=filled)]
    assert client.count(filled).count == 10


def test_acknowledged_writes_survive_a_killed_server(tmp_path):
    path, log = tmp_path / "qdrant", tmp_path / "qdrant.log"
    server = qdrant_local(path, port=free_port(), log_path=log).start()
    client = QdrantClient(url=f"http://127.0.0.1:{server.port}", timeout=10)
    client.create_collection("kept", vectors_config=VECTORS)
    client.upsert("kept", points=[point(n, [1.0, 0.0, 0.0, float(n)]) for n in range(5)], wait=True)
    client.close()
    server.proc.kill()  # no shutdown, no flush: only the write-ahead log holds the points
    server.proc.wait()

    with qdrant_local(path, port=free_port(), log_path=log) as restarted:
        client = QdrantClient(url=f"http://127.0.0.1:{restarted.port}", timeout=10)
        assert client.count("kept").count == 5
        client.close()


def test_collections_of_qdrant_client_local_mode_are_imported_once(tmp_path):
    path, log = tmp_path / "qdrant", tmp_path / "qdrant.log"
    local = QdrantClient(path=str(path))  # the engine this store replaced, writing its own format
    local.create_collection("old", vectors_config=VECTORS, metadata={"dimension": 4})
    local.upsert("old", points=[point(n, [0.0, 0.0, 1.0, 0.0] if n == 777 else [1.0, 0.0, 0.0, n / 1500], twin="ada")
                                for n in range(1500)])
    local.close()

    for _ in range(2):  # the second start finds nothing left to import, and keeps what the first did
        with qdrant_local(path, port=free_port(), log_path=log) as server:
            client = QdrantClient(url=f"http://127.0.0.1:{server.port}", timeout=10)
            assert client.count("old").count == 1500
            assert client.get_collection("old").config.metadata == {"dimension": 4}
            [best] = client.query_points("old", query=[0.0, 0.0, 1.0, 0.0], limit=1, with_payload=True).points
            assert best.payload == {"number": 777, "twin": "ada"} and best.score == pytest.approx(1.0)
            client.close()
    assert not (path / "meta.json").exists() and (path / "local-mode-imported" / "meta.json").is_file()
