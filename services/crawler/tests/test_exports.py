"""Export archives (LinkedIn, X, Medium, Substack): what they yield, and what hostile archives get."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from llmtwin.domain import DocumentKind, Platform, RawDocument
from twin_crawler.archive import ExportArchive
from twin_crawler.config import CrawlConfig
from devstack.demo_sources import SAMPLES, zip_folder
from twin_crawler.items import CrawlRefused, CrawlTarget, Failed, Skipped
from twin_crawler.worker import collect

LINKEDIN = SAMPLES / "linkedin"


def crawl(platform: Platform, location: Path | str, config: CrawlConfig) -> list:
    return collect(CrawlTarget("ada", platform, str(location)), config)


def documents(items: list) -> list[RawDocument]:
    return [i for i in items if isinstance(i, RawDocument)]


def test_linkedin_export_keeps_the_authors_text_exactly(config):
    items = crawl(Platform.LINKEDIN, LINKEDIN, config)
    docs = documents(items)
    shares = [d for d in docs if d.metadata["type"] == "share"]
    comments = [d for d in docs if d.metadata["type"] == "comment"]
    assert (len(shares), len(comments)) == (11, 4)
    assert all(d.kind is DocumentKind.POST and d.platform is Platform.LINKEDIN for d in docs)

    first = next(d for d in shares if d.link.endswith(":7150000000000000001"))
    # Multi-line quoted field: line breaks, styled letters, emoji and hashtags all kept.
    assert first.content.startswith("New year, same rule: 𝗹𝗼𝗼𝗸 𝗮𝘁 𝘆𝗼𝘂𝗿 𝗱𝗮𝘁𝗮")
    assert "\n\nI opened fifty random rows" in first.content and "🍪" in first.content
    assert first.content.endswith("#DataEngineering #SmallLanguageModels")
    assert first.published_at.isoformat() == "2024-01-08T07:42:10+00:00"
    escaped = next(d for d in shares if d.link.endswith(":7150000000000000011"))
    assert '"07/30/24"' in escaped.content  # "" in the CSV is one quote in the text
    assert next(d for d in shares if d.link.endswith("010")).metadata["media_url"].endswith("laptop.jpg")

    # The share without a ShareLink gets a synthetic link that is the same on every crawl.
    synthetic = [d for d in shares if d.link.startswith("linkedin-export://")]
    assert len(synthetic) == 1 and "random UUIDs" in synthetic[0].content
    assert synthetic[0].id in {d.id for d in documents(crawl(Platform.LINKEDIN, LINKEDIN, config))}

    # Two comments under one post keep distinct ids; the reshare without text is skipped.
    same_post = [d for d in comments if d.metadata["commented_on"].endswith("0102")]
    assert len({d.id for d in same_post}) == 2
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert len(skipped) == 1 and "without text" in skipped[0].reason


def test_a_zipped_export_yields_the_same_documents_as_the_folder(config, tmp_path):
    archive = zip_folder(LINKEDIN, tmp_path / "export.zip")
    from_zip = documents(crawl(Platform.LINKEDIN, f"file://{archive}", config))
    from_folder = documents(crawl(Platform.LINKEDIN, LINKEDIN, config))
    assert sorted((d.id, d.content_hash) for d in from_zip) == sorted((d.id, d.content_hash) for d in from_folder)


def test_numbered_shares_files_in_cp1252_are_decoded_with_a_note(config, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    text = "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility\r\n" \
           '2023-11-02 10:00:00,https://www.linkedin.com/feed/update/urn:li:activity:9,"Café notes,\r\nZoë''s ""favourite"" bug",,,PUBLIC\r\n'
    (export / "Shares_4711.csv").write_bytes(text.encode("cp1252"))
    [doc] = documents(crawl(Platform.LINKEDIN, export, config))
    assert doc.content == 'Café notes,\r\nZoës "favourite" bug'
    assert doc.metadata["encoding_note"] == "not UTF-8; decoded as cp1252"


def test_a_shares_file_without_its_columns_fails_alone(config, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "Shares.csv").write_text("When,What\n2024-01-01,hello\n", encoding="utf-8")
    (export / "Comments.csv").write_text("Date,Link,Message\n2024-01-02 10:00:00,https://l/1,a fine comment\n")
    items = crawl(Platform.LINKEDIN, export, config)
    [failed] = [i for i in items if isinstance(i, Failed)]
    assert "missing column(s) Date, ShareCommentary" in failed.reason
    assert [d.content for d in documents(items)] == ["a fine comment"]


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_zip_bomb_is_refused(config, tmp_path):
    bomb = write_zip(tmp_path / "bomb.zip", {"Shares.csv": b"Date,ShareCommentary\n" + b"0" * 20_000_000})
    with pytest.raises(CrawlRefused, match="zip bomb"):
        crawl(Platform.LINKEDIN, bomb, config)


def test_an_archive_over_the_total_size_is_refused(tmp_path):
    archive = write_zip(tmp_path / "big.zip", {f"part{i}.csv": bytes(range(256)) * 8 for i in range(4)})
    with pytest.raises(CrawlRefused, match="more than 5000 bytes uncompressed"):
        ExportArchive(archive, CrawlConfig(max_archive_bytes=5000))


def test_a_huge_member_is_refused(tmp_path):
    archive = write_zip(tmp_path / "huge.zip", {"Shares.csv": bytes(range(256)) * 100})
    with pytest.raises(CrawlRefused, match="'Shares.csv' is 25600 bytes"):
        ExportArchive(archive, CrawlConfig(max_member_bytes=10_000))


@pytest.mark.parametrize("member", ["../Shares.csv", "/etc/Shares.csv", "data/../../Shares.csv", "C:/Shares.csv"])
def test_members_escaping_the_archive_are_refused(config, tmp_path, member):
    archive = write_zip(tmp_path / "escape.zip", {member: b"Date,ShareCommentary\n2024-01-01,hi\n"})
    with pytest.raises(CrawlRefused, match="escapes the archive folder"):
        crawl(Platform.LINKEDIN, archive, config)


def test_a_folder_linking_outside_itself_is_refused(config, tmp_path):
    (tmp_path / "secret.csv").write_text("Date,ShareCommentary\n2024-01-01,secret\n")
    export = tmp_path / "export"
    export.mkdir()
    (export / "Shares.csv").symlink_to(tmp_path / "secret.csv")
    with pytest.raises(CrawlRefused, match="links outside the export folder"):
        crawl(Platform.LINKEDIN, export, config)


def test_x_archive_tweets_become_posts_and_a_broken_one_fails_alone(config, tmp_path):
    tweets = [
        {"tweet": {"id_str": "101", "created_at": "Wed Oct 09 20:19:24 +0000 2024",
                   "full_text": "Shipping a 𝘀𝗺𝗮𝗹𝗹 model today: https://t.co/abc",
                   "entities": {"urls": [{"url": "https://t.co/abc", "expanded_url": "https://ada.example/post"}]}}},
        {"tweet": {"id_str": "102", "full_text": "RT @someone: not my words"}},
        {"tweet": {"id_str": "103"}},
    ]
    archive = write_zip(tmp_path / "x.zip", {"data/tweets.js": ("window.YTD.tweets.part0 = " + json.dumps(tweets)).encode()})
    items = crawl(Platform.X, archive, config)
    [doc] = documents(items)
    assert doc.link == "https://x.com/i/web/status/101"
    assert doc.content == "Shipping a 𝘀𝗺𝗮𝗹𝗹 model today: https://ada.example/post"
    assert doc.published_at.isoformat() == "2024-10-09T20:19:24+00:00"
    assert [type(i).__name__ for i in items] == ["RawDocument", "Skipped", "Failed"]
    assert "needs id_str and full_text" in items[2].reason


ARTICLE_BODY = "".join(f"<p>Paragraph {i} of a Medium article about lineage, long enough to be kept as text.</p>"
                       for i in range(6))


def test_medium_export_articles_use_their_canonical_links_and_drafts_are_skipped(config, tmp_path):
    page = (f'<html><head><title>On lineage</title></head><body><article><h1>On lineage</h1>{ARTICLE_BODY}'
            '</article><footer><a href="https://medium.com/@ada/on-lineage-1a2b" class="p-canonical">'
            'Canonical link</a> Exported from Medium on May 1, 2024.</footer></body></html>')
    archive = write_zip(tmp_path / "medium.zip", {"medium-export/posts/2024-03-01_On-lineage-1a2b.html": page.encode(),
                                                  "medium-export/posts/draft_Untitled-9z.html": page.encode()})
    items = crawl(Platform.MEDIUM, archive, config)
    [doc] = documents(items)
    assert doc.link == "https://medium.com/@ada/on-lineage-1a2b" and doc.kind is DocumentKind.ARTICLE
    assert "Paragraph 0 of a Medium article" in doc.content and "Paragraph 5" in doc.content
    assert "Exported from Medium" not in doc.content
    assert [i.reason for i in items if isinstance(i, Skipped)] == ["an unpublished draft"]


def test_substack_export_reads_posts_csv_and_bodies(config, tmp_path):
    rows = ("post_id,post_date,is_published,type,audience,title,subtitle\n"
            "111.on-idempotency,2024-04-18T07:45:00.000Z,true,newsletter,everyone,On idempotency,Run it twice\n"
            "222.unfinished,2024-05-01T00:00:00.000Z,false,newsletter,everyone,Unfinished,\n"
            "333.lost-body,2024-06-01T00:00:00.000Z,true,newsletter,everyone,Lost body,\n")
    archive = write_zip(tmp_path / "substack.zip", {"posts.csv": rows.encode(),
                                                    "posts/111.on-idempotency.html": ARTICLE_BODY.encode(),
                                                    "posts/222.unfinished.html": ARTICLE_BODY.encode()})
    items = crawl(Platform.SUBSTACK, archive, config)
    [doc] = documents(items)
    assert (doc.title, doc.published_at.isoformat()) == ("On idempotency", "2024-04-18T07:45:00+00:00")
    assert doc.link == "substack-export://posts/111.on-idempotency" and "Paragraph 3" in doc.content
    assert [i.reason for i in items if isinstance(i, Skipped)] == ["not published"]
    assert [i.reason for i in items if isinstance(i, Failed)] == ["posts/333.lost-body.html is missing from the export"]
