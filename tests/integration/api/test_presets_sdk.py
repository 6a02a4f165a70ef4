"""The Cloudflare SDK's ``realtime_kit.presets.*`` against a real roomtape server, on SQLite and PostgreSQL:
default presets, create/list/get/replace/update/delete with the SDK's types, 409 for a preset in use,
participants checked against the app's presets, and another account seeing none of it."""

from __future__ import annotations

from collections.abc import Iterator

import cloudflare
import httpx
import pytest
from cloudflare import Cloudflare
from tests.conftest import Server

DEFAULTS = {"group_call_host", "group_call_participant", "webinar_viewer", "livestream_viewer"}

CONFIG = {
    "max_screenshare_count": 2,
    "max_video_streams": {"desktop": 9, "mobile": 4},
    "media": {
        "screenshare": {"frame_rate": 10, "quality": "hd"},
        "video": {"frame_rate": 24, "quality": "vga", "simulcast": True},
        "audio": {"enable_stereo": True},
    },
    "view_type": "WEBINAR",
}


def _permissions(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "accept_waiting_requests": False,
        "can_accept_production_requests": False,
        "can_change_participant_permissions": False,
        "can_edit_display_name": True,
        "can_livestream": False,
        "can_record": False,
        "can_spotlight": False,
        "chat": {
            "private": {"can_receive": True, "can_send": False, "files": False, "text": True},
            "public": {"can_send": True, "files": False, "text": True},
        },
        "connected_meetings": {
            "can_alter_connected_meetings": False,
            "can_switch_connected_meetings": False,
            "can_switch_to_parent_meeting": False,
        },
        "disable_participant_audio": False,
        "disable_participant_screensharing": False,
        "disable_participant_video": False,
        "hidden_participant": False,
        "kick_participant": False,
        "media": {
            "audio": {"can_produce": "ALLOWED"},
            "screenshare": {"can_produce": "NOT_ALLOWED"},
            "video": {"can_produce": "CAN_REQUEST"},
        },
        "pin_participant": False,
        "plugins": {"can_close": False, "can_edit_config": False, "can_start": False, "config": {}},
        "polls": {"can_create": False, "can_view": True, "can_vote": True},
        "recorder_type": "NONE",
        "show_participant_list": True,
        "waiting_room_type": "SKIP",
    }
    base.update(overrides)
    return base


UI = {
    "design_tokens": {
        "border_radius": "rounded",
        "border_width": "thin",
        "colors": {
            "background": {"1000": "#000000", "600": "#111111", "700": "#222222", "800": "#333333", "900": "#444444"},
            "brand": {"300": "#aa0000", "400": "#bb0000", "500": "#cc0000", "600": "#dd0000", "700": "#ee0000"},
            "danger": "#ff0000",
            "success": "#00ff00",
            "text": "#ffffff",
            "text_on_brand": "#ffffff",
            "video_bg": "#000000",
            "warning": "#ffff00",
        },
        "spacing_base": 4,
        "theme": "dark",
    }
}


@pytest.fixture(scope="module")
def cf(server: Server) -> Iterator[Cloudflare]:
    client = Cloudflare(api_token=server.api_token, base_url=server.base_url, max_retries=0)
    yield client
    client.close()


def test_new_app_has_the_default_presets(cf: Cloudflare, server: Server) -> None:
    listed = cf.realtime_kit.presets.get(server.app_id, account_id=server.account_id, per_page=100)
    names = {p.name for p in listed.data}
    assert DEFAULTS <= names and listed.paging.total_count == len(listed.data)
    viewer = next(p for p in listed.data if p.name == "webinar_viewer")
    assert viewer.id and viewer.created_at is not None
    full = cf.realtime_kit.presets.get_preset_by_id(viewer.id, account_id=server.account_id, app_id=server.app_id)
    media = full.data.permissions.media
    assert (media.audio.can_produce, media.video.can_produce, media.screenshare.can_produce) == ("NOT_ALLOWED",) * 3
    assert full.data.config.view_type == "WEBINAR" and full.data.permissions.can_record is False
    host = next(p for p in listed.data if p.name == "group_call_host")
    host_full = cf.realtime_kit.presets.get_preset_by_id(host.id, account_id=server.account_id, app_id=server.app_id)
    assert host_full.data.permissions.can_record is True
    assert host_full.data.permissions.media.video.can_produce == "ALLOWED"


def test_presets_crud_with_the_sdk_types(cf: Cloudflare, server: Server) -> None:
    presets = cf.realtime_kit.presets
    ids = {"account_id": server.account_id, "app_id": server.app_id}
    created = presets.create(
        server.app_id,
        account_id=server.account_id,
        name="panelist",
        config=CONFIG,  # type: ignore[arg-type]
        permissions=_permissions(can_record=True),  # type: ignore[arg-type]
        ui=UI,  # type: ignore[arg-type]
    )
    assert created.success is True
    p = created.data
    assert p.name == "panelist" and p.config.media.video.quality == "vga" and p.config.max_screenshare_count == 2
    assert p.permissions.can_record is True and p.permissions.media.video.can_produce == "CAN_REQUEST"
    assert p.permissions.chat.private.can_send is False
    assert p.ui.design_tokens.colors.background.api_1000 == "#000000"
    assert p.ui.design_tokens.colors.brand.api_500 == "#cc0000"
    assert p.updated_at >= p.created_at

    with pytest.raises(cloudflare.ConflictError):
        presets.create(
            server.app_id,
            account_id=server.account_id,
            name="panelist",
            config=CONFIG,
            permissions=_permissions(),
            ui=UI,  # type: ignore[arg-type]
        )

    got = presets.get_preset_by_id(p.id, **ids)
    assert got.data.id == p.id and got.data.config.media.screenshare.quality == "hd"
    found = presets.get(server.app_id, account_id=server.account_id, search="panel")
    assert [x.id for x in found.data] == [p.id]
    page = presets.get(server.app_id, account_id=server.account_id, per_page=2, page_no=2)
    assert len(page.data) == 2 and page.paging.start_offset == 2

    # PATCH merges: one nested field changes, its siblings stay.
    updated = presets.update(
        p.id,
        **ids,
        permissions={"media": {"video": {"can_produce": "ALLOWED"}}},
        config={"media": {"video": {"quality": "hd"}}},  # type: ignore[typeddict-item]
    )
    u = updated.data
    assert u.permissions.media.video.can_produce == "ALLOWED" and u.permissions.media.audio.can_produce == "ALLOWED"
    assert u.permissions.media.screenshare.can_produce == "NOT_ALLOWED" and u.permissions.can_record is True
    assert u.config.media.video.quality == "hd" and u.config.media.video.frame_rate == 24
    assert u.name == "panelist" and u.updated_at >= p.updated_at

    # PUT replaces everything.
    replaced = presets.replace_preset_by_id(
        p.id,
        **ids,
        name="panelist-2",
        config=CONFIG,
        permissions=_permissions(),
        ui=UI,  # type: ignore[arg-type]
    )
    r = replaced.data
    assert r.name == "panelist-2" and r.permissions.can_record is False
    assert r.permissions.media.video.can_produce == "CAN_REQUEST" and r.config.media.video.quality == "vga"

    # Bad input: 400, nothing changed.
    with pytest.raises(cloudflare.BadRequestError):
        presets.update(p.id, **ids, config={"media": {"video": {"quality": "8k"}}})  # type: ignore[typeddict-item]
    assert presets.get_preset_by_id(p.id, **ids).data.config.media.video.quality == "vga"

    deleted = presets.delete(p.id, **ids)
    assert deleted.success and deleted.data.id == p.id and deleted.data.name == "panelist-2"
    with pytest.raises(cloudflare.NotFoundError):
        presets.get_preset_by_id(p.id, **ids)


def test_participants_must_name_a_preset_and_a_used_preset_cannot_be_deleted(cf: Cloudflare, server: Server) -> None:
    presets = cf.realtime_kit.presets
    ids = {"account_id": server.account_id, "app_id": server.app_id}
    meeting = cf.realtime_kit.meetings.create(server.app_id, account_id=server.account_id, title="presets").data
    with pytest.raises(cloudflare.NotFoundError) as err:
        cf.realtime_kit.meetings.add_participant(
            meeting.id, **ids, custom_participant_id="x", preset_name="no_such_preset"
        )
    assert "no_such_preset" in str(err.value.body) and "group_call_host" in str(err.value.body)

    stage = presets.create(
        server.app_id,
        account_id=server.account_id,
        name="stage",
        config=CONFIG,
        permissions=_permissions(),
        ui=UI,  # type: ignore[arg-type]
    ).data
    person = cf.realtime_kit.meetings.add_participant(
        meeting.id, **ids, custom_participant_id="on-stage", preset_name="stage"
    ).data
    with pytest.raises(cloudflare.ConflictError) as conflict:
        presets.delete(stage.id, **ids)
    assert "in use" in str(conflict.value.body)
    assert presets.get_preset_by_id(stage.id, **ids).data.name == "stage"

    # Renaming the preset renames it for its participants.
    presets.update(stage.id, **ids, name="main-stage")
    again = cf.realtime_kit.meetings.get_meeting_participant(person.id, **ids, meeting_id=meeting.id).data
    assert again.preset_name == "main-stage"

    with pytest.raises(cloudflare.NotFoundError):
        cf.realtime_kit.meetings.edit_participant(person.id, **ids, meeting_id=meeting.id, preset_name="nope")
    cf.realtime_kit.meetings.edit_participant(person.id, **ids, meeting_id=meeting.id, preset_name="group_call_host")
    assert presets.delete(stage.id, **ids).data.id == stage.id


def test_another_account_sees_no_preset(cf: Cloudflare, server: Server) -> None:
    ours = cf.realtime_kit.presets.create(
        server.app_id,
        account_id=server.account_id,
        name="secret-preset",
        config=CONFIG,
        permissions=_permissions(),
        ui=UI,  # type: ignore[arg-type]
    ).data
    other = server.new_app("preset-intruder")
    intruder = Cloudflare(api_token=other["api_token"], base_url=server.base_url, max_retries=0).realtime_kit
    # Their app has its own defaults, none of ours.
    theirs = intruder.presets.get(other["app_id"], account_id=other["account_id"], per_page=100).data
    assert {p.name for p in theirs} == DEFAULTS and ours.id not in {p.id for p in theirs}
    for kwargs in (
        {"account_id": server.account_id, "app_id": server.app_id},
        {"account_id": other["account_id"], "app_id": server.app_id},
        {"account_id": other["account_id"], "app_id": other["app_id"]},  # our preset id under their app
    ):
        with pytest.raises(cloudflare.NotFoundError) as err:
            intruder.presets.get_preset_by_id(ours.id, **kwargs)
        assert "secret-preset" not in str(err.value.body)
        with pytest.raises(cloudflare.NotFoundError):
            intruder.presets.update(ours.id, **kwargs, name="pwned")
        with pytest.raises(cloudflare.NotFoundError):
            intruder.presets.delete(ours.id, **kwargs)
        with pytest.raises(cloudflare.NotFoundError):
            intruder.presets.replace_preset_by_id(
                ours.id,
                **kwargs,
                name="pwned",
                config=CONFIG,
                permissions=_permissions(),
                ui=UI,  # type: ignore[arg-type]
            )
    with pytest.raises(cloudflare.NotFoundError):
        intruder.presets.get(server.app_id, account_id=server.account_id)
    base = f"{server.base_url}/accounts/{server.account_id}/realtime/kit/{server.app_id}/presets/{ours.id}"
    assert (
        httpx.get(base, headers={"Authorization": f"Bearer {server.api_token}"}).json()["data"]["name"]
        == "secret-preset"
    )
