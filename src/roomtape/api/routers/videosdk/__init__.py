"""The VideoSDK-compatible API (``/v2/…``): code written for VideoSDK works by changing the base URL and token.

- :mod:`.rooms` — ``/v2/rooms``: create (``customRoomId``), list, fetch, validate, deactivate;
- :mod:`.sessions` — ``/v2/sessions``: list by room, fetch, with participants' timelogs;
- :mod:`.meetings` — ``/v2/recordings``: meeting (composite) recording start/end, list, fetch, delete;
- :mod:`.tracks` — ``/v2/recordings/participant/track``: track recording start/stop (seeds 000, 001, 003),
  list, fetch, delete;
- :mod:`.common` — authentication (API token or an app's HS256 JWT with ``apikey``), paging, links.

The queries live in :mod:`roomtape.db.videosdk`; these modules translate HTTP only.
"""

from roomtape.api.routers.videosdk import meetings, rooms, sessions, tracks

ROUTERS = (tracks.router, meetings.router, rooms.router, sessions.router)
"""In the order they are mounted (the track paths before ``/v2/recordings/{id}``)."""

__all__ = ["ROUTERS"]
