"""Reading an export-archive upload (multipart: `platform` and `file`) without trusting its size."""
from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from .service import UploadTooLarge
from .validation import InputError

# Room for the multipart framing and the small fields around the file.
_FORM_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ArchiveUpload:
    platform: str
    filename: str
    file: UploadFile

    async def read(self, size: int) -> bytes:
        return await self.file.read(size)

    async def close(self) -> None:
        await self.file.close()


def refuse_declared_oversize(request: Request, limit_bytes: int) -> None:
    """Refuse before reading the body when its declared length is already too much.

    A body without a declared length is still capped while it is copied (see TwinService.save_archive).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes + _FORM_OVERHEAD_BYTES:
        raise UploadTooLarge(limit_bytes)


async def parse_upload_form(request: Request, limit_bytes: int) -> FormData:
    refuse_declared_oversize(request, limit_bytes)
    return await request.form(max_files=1, max_fields=8)


def archive_from_form(form: FormData) -> ArchiveUpload:
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        raise InputError("file", "Choose the export file to upload.")
    platform = form.get("platform")
    return ArchiveUpload(platform if isinstance(platform, str) else "", file.filename, file)


async def read_archive_upload(request: Request, limit_bytes: int) -> ArchiveUpload:
    return archive_from_form(await parse_upload_form(request, limit_bytes))
