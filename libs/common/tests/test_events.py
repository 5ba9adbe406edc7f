"""Decoding bus messages: the topics that carry two kinds of message tell them apart."""
from __future__ import annotations

import json

import pytest

from llmtwin.domain import Platform, Split
from llmtwin.events import BadMessage, CrawlRequested, ForgetRequested, SamplesWithdrawn, SampleStored, Topic, decode


def test_crawl_requests_carry_crawls_and_forget_requests_told_apart_by_their_request():
    crawl = CrawlRequested.now("ada", "profile-1", Platform.BLOG, "https://ada.example/")
    forget = ForgetRequested.now("ada", "doc-1")
    assert decode(Topic.CRAWL_REQUESTS, crawl.encode()) == crawl
    assert decode(Topic.CRAWL_REQUESTS, forget.encode()) == forget
    assert crawl.key == forget.key == "ada"  # one partition: a twin's crawls and forgets keep their order


def test_instruct_samples_carry_stored_and_withdrawn_samples():
    stored = SampleStored(id="s1", twin_id="ada", document_id="doc-1", split=Split.TRAIN)
    withdrawn = SamplesWithdrawn.of("ada", "doc-1", ["s2", "s1"])
    assert decode(Topic.INSTRUCT_SAMPLES, stored.encode()) == stored
    assert decode(Topic.INSTRUCT_SAMPLES, withdrawn.encode()) == withdrawn
    assert withdrawn.sample_ids == ["s1", "s2"] and withdrawn.id == SamplesWithdrawn.of("ada", "doc-1", []).id


def test_a_crawl_request_without_a_request_field_is_a_crawl():
    data = json.loads(CrawlRequested.now("ada", "profile-1", Platform.BLOG, "https://ada.example/").encode())
    del data["request"]
    assert isinstance(decode(Topic.CRAWL_REQUESTS, data), CrawlRequested)


@pytest.mark.parametrize("request_field, reason", [
    ("delete", "unknown request 'delete' on crawl_requests: expected one of crawl, forget"),
    (["forget"], "unknown request \\['forget'\\]"),
])
def test_an_unknown_request_is_a_bad_message(request_field, reason):
    data = {**json.loads(ForgetRequested.now("ada", "doc-1").encode()), "request": request_field}
    with pytest.raises(BadMessage, match=reason):
        decode(Topic.CRAWL_REQUESTS, data)


def test_a_forget_request_needs_its_document():
    data = json.loads(ForgetRequested.now("ada", "doc-1").encode())
    del data["document_id"]
    with pytest.raises(BadMessage, match="invalid crawl_requests message: Field required at \\('document_id',\\)"):
        decode(Topic.CRAWL_REQUESTS, data)
