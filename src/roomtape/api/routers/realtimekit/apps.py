"""``/accounts/{account_id}/realtime/kit/apps``: list and create apps."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import Caller, account_of
from roomtape.api.context import get_db
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import Page
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.schemas import Envelope, ListEnvelope, paging
from roomtape.db import accounts
from roomtape.db.models import App

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/apps", tags=["apps"])


@router.get("", response_model=ListEnvelope[s.AppOut], summary="List apps")
async def list_apps(
    page: Page = Depends(),
    search: str | None = Query(None, max_length=255, pattern=NO_NUL, description="Part of the app's name or its id"),
    sort_order: Literal["ASC", "DESC"] = "DESC",
    caller: Caller = Depends(account_of),
    db: AsyncSession = Depends(get_db),
) -> ListEnvelope[s.AppOut]:
    """The apps of the account, newest first unless ``sort_order=ASC``."""
    where = [App.account_id == caller.account_id]
    if search:
        where.append(App.name.contains(search, autoescape=True) | (App.id == search))
    total = int(await db.scalar(select(func.count()).select_from(App).where(*where)) or 0)
    order = App.created_at.asc() if sort_order == "ASC" else App.created_at.desc()
    rows = (
        await db.scalars(select(App).where(*where).order_by(order, App.id).offset(page.offset).limit(page.per_page))
    ).all()
    data = [s.AppOut(id=a.id, name=a.name, created_at=a.created_at) for a in rows]
    return ListEnvelope(data=data, paging=paging(total, page.offset, len(data)))


@router.post("", response_model=Envelope[s.AppCreated], status_code=201, summary="Create an app")
async def create_app(
    body: s.AppCreate, caller: Caller = Depends(account_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.AppCreated]:
    """Create an app in the caller's account. The caller's API token works for it at once."""
    app = await accounts.create_app(db, caller.account_id, body.name)
    await db.commit()
    return Envelope(data=s.AppCreated(app=s.AppOut(id=app.id, name=app.name, created_at=app.created_at)))
