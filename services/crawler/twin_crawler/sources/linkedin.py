"""LinkedIn "Get a copy of your data": Shares.csv (or Shares_<id>.csv) posts and Comments.csv comments."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from llmtwin.domain import DocumentKind, Platform, RawDocument

from ..config import CrawlConfig
from ..extract import parse_date
from ..items import CrawlRefused, CrawlTarget, Failed, Item, Skipped
from .exports import read_csv, export_link, open_archive, text_key


@dataclass(frozen=True)
class LinkedInExport:
    config: CrawlConfig

    def collect(self, target: CrawlTarget) -> Iterator[Item]:
        with open_archive(target.url, self.config) as archive:
            shares = archive.matching("Shares.csv", "Shares_*.csv")
            comments = archive.matching("Comments.csv", "Comments_*.csv")
            if not shares and not comments:
                raise CrawlRefused("not a LinkedIn export: no Shares.csv or Comments.csv inside")
            for name in shares:
                yield from self._members(archive, name, target, comment=False)
            for name in comments:
                yield from self._members(archive, name, target, comment=True)

    def _members(self, archive, name: str, target: CrawlTarget, *, comment: bool) -> Iterator[Item]:
        decoded = archive.read_text(name)
        required = ("Date", "Link", "Message") if comment else ("Date", "ShareCommentary")
        try:
            rows = read_csv(decoded, name, required)
        except CrawlRefused as exc:  # one bad file fails alone
            yield Failed(export_link(Platform.LINKEDIN, name), str(exc))
            return
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            yield self._comment(row, target, name, decoded.note) if comment \
                else self._share(row, target, name, number, decoded.note)

    def _metadata(self, name: str, note: str | None, **fields: str) -> dict[str, str]:
        meta = {"source_file": name, **{k: v for k, v in fields.items() if v}}
        if note:
            meta["encoding_note"] = note
        return meta

    def _share(self, row: dict[str, str], target: CrawlTarget, name: str, line: int, note: str | None) -> Item:
        text = row["ShareCommentary"].strip()
        link = row.get("ShareLink", "").strip() or export_link(
            Platform.LINKEDIN, "shares", text_key(row["Date"], text))
        if not text:
            return Skipped(link, f"{name} line {line}: a share without text (a plain reshare)")
        return RawDocument.create(
            twin_id=target.twin_id, platform=Platform.LINKEDIN, kind=DocumentKind.POST, link=link,
            content=text, published_at=parse_date(row["Date"]),
            metadata=self._metadata(name, note, type="share", shared_url=row.get("SharedUrl", ""),
                                    media_url=row.get("MediaUrl", ""), visibility=row.get("Visibility", "")))

    def _comment(self, row: dict[str, str], target: CrawlTarget, name: str, note: str | None) -> Item:
        text, post = row["Message"].strip(), row["Link"].strip()
        # Several comments can sit under one post: the comment's own key makes its link.
        link = f"{post or export_link(Platform.LINKEDIN, 'comments')}#comment-{text_key(row['Date'], text)}"
        if not text:
            return Skipped(link, f"{name}: an empty comment")
        return RawDocument.create(
            twin_id=target.twin_id, platform=Platform.LINKEDIN, kind=DocumentKind.POST, link=link,
            content=text, published_at=parse_date(row["Date"]),
            metadata=self._metadata(name, note, type="comment", commented_on=post))
