"""Response envelopes shared by the API routers: RealtimeKit's ``{success, data, paging}``."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Paging(BaseModel):
    """Where a page sits in the full result: 0-based ``start_offset``, exclusive ``end_offset``."""

    total_count: int = Field(ge=0)
    start_offset: int = Field(ge=0)
    end_offset: int = Field(ge=0)


class Envelope(BaseModel, Generic[T]):
    """A successful response carrying one object."""

    success: bool = True
    data: T


class ListEnvelope(BaseModel, Generic[T]):
    """A successful response carrying one page of objects."""

    success: bool = True
    data: list[T]
    paging: Paging


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: int
    message: str


class ErrorResponse(BaseModel):
    """A failed request. ``error`` is RealtimeKit's shape, ``errors`` the Cloudflare SDK's."""

    success: bool = False
    error: ErrorDetail
    errors: list[ErrorDetail]


def paging(total: int, offset: int, count: int) -> Paging:
    """Paging for ``count`` rows returned from ``offset`` out of ``total``."""
    return Paging(total_count=total, start_offset=offset, end_offset=offset + count)
