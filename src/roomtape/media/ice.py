"""Which local addresses ICE gathers host candidates on.

aioice gathers on every interface except loopback, and aiortc exposes no option to choose: the choice is
made by replacing ``aioice.ice.get_host_addresses``, which aioice looks up as a module global each time a
connection gathers. Loopback-only is what tests on one machine want; a multi-homed server may want to offer
only its LAN address.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import aioice.ice

__all__ = ["parse_addresses", "restore_host_addresses", "use_host_addresses"]

_ORIGINAL: Final[Callable[[bool, bool], list[str]]] = aioice.ice.get_host_addresses


def parse_addresses(value: str) -> list[str]:
    """Split a comma-separated address list, dropping blanks.

    Args:
        value: e.g. ``"127.0.0.1, 10.0.0.5"``.

    Returns:
        The addresses in order.
    """
    return [part.strip() for part in value.split(",") if part.strip()]


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on exactly ``addresses`` (IPv4 or IPv6) from now on, process-wide.

    Args:
        addresses: Local addresses; empty restores aioice's default.
    """
    if not addresses:
        restore_host_addresses()
        return
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    setattr(aioice.ice, "get_host_addresses", get_host_addresses)  # noqa: B010 - aioice's own signature is narrower


def restore_host_addresses() -> None:
    """Gather on aioice's default interfaces again."""
    setattr(aioice.ice, "get_host_addresses", _ORIGINAL)  # noqa: B010 - see use_host_addresses
