"""Outbound safety: roomtape only calls public addresses unless the configuration allows more.

Webhook URLs (registered ones and VideoSDK's per-request ``webhookUrl``) and the hosts of a client's
``storage_config`` (S3/GCS/Azure ``endpoint``, the DigitalOcean region endpoint, the SFTP ``host``) are
checked twice:

1. when they are registered or a recording starts: every address the host resolves to must be public, else
   the request is refused with 400 (:func:`check_url`, ``roomtape.storage.validate.check_storage_config``;
   a name that does not resolve is accepted here — the connection will fail later);
2. when roomtape connects: webhook deliveries check the address the TCP connection actually reached
   (:func:`guarded_client`), so a name re-pointed to an internal address after registration (DNS rebinding)
   is refused; uploads resolve the storage hosts again before each upload.

"Public" means ``ipaddress``'s ``is_global`` and not multicast (IPv4-mapped IPv6 addresses are judged as
the IPv4 address). ``outbound_allow_private`` lifts the rule; ``outbound_allow_cidrs`` lifts it for listed
networks. The server-wide default storage (``ROOMTAPE_STORAGE_URL``) is the operator's and not checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore
import httpx

from roomtape.config import Settings
from roomtape.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses roomtape may connect to on a client's behalf."""

    allow_private: bool = False
    """Allow every address."""
    allow_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)
    """Non-public networks allowed anyway."""

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        """The policy ``outbound_allow_private`` and ``outbound_allow_cidrs`` describe.

        Raises:
            ValueError: A CIDR in ``outbound_allow_cidrs`` is not valid.
        """
        nets = tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in settings.outbound_allow_cidrs.split(",")
            if part.strip()
        )
        return cls(settings.outbound_allow_private, nets)

    def allows(self, address: str | IPAddress) -> bool:
        """Whether roomtape may connect to ``address``."""
        try:
            ip: IPAddress = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if self.allow_private or any(ip in net for net in self.allow_networks if net.version == ip.version):
            return True
        return ip.is_global and not ip.is_multicast


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to; empty if it does not resolve."""
    literal = _literal(host)
    if literal is not None:
        return [str(literal)]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):  # does not resolve (gaierror is an OSError)
        return []
    return sorted({str(info[4][0]) for info in infos})


async def check_host(policy: OutboundPolicy, host: str, port: int, what: str) -> None:
    """Raise ``InvalidInput`` if ``host`` resolves to an address the policy does not allow."""
    if not host:
        raise InvalidInput(f"{what} has no host")
    for address in await resolve(host, port):
        if not policy.allows(address):
            raise InvalidInput(
                f"{what} {host!r} resolves to {address}, a private, loopback or link-local address; "
                "the server's outbound_allow_private / outbound_allow_cidrs settings decide which are allowed"
            )


def _host_port(url: str) -> tuple[str, int] | None:
    """The host and port an http(s) URL connects to; None if it names none (nothing is connected to then)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:  # a port that is not a number: the host is still what a client would try
        port = default
    return host, port


async def check_url(settings: Settings, url: str, what: str = "webhook URL") -> None:
    """Refuse (``InvalidInput``) an http(s) URL whose host resolves to a non-public address.

    A URL without an http(s) host is not judged here: nothing can connect to it, and its deliveries fail.
    """
    target = _host_port(url)
    if target is not None:
        await check_host(OutboundPolicy.from_settings(settings), target[0], target[1], what)


_RTMP_PORTS: Final = {"rtmp": 1935, "rtmps": 443}


def rtmp_host_port(url: str) -> tuple[str, int]:
    """The host and port an ``rtmp://`` or ``rtmps://`` URL connects to.

    Raises:
        InvalidInput: Another scheme, no host, or a bad port.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"rtmp_url is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _RTMP_PORTS:
        raise InvalidInput("rtmp_url must start with rtmp:// or rtmps://")
    if not parts.hostname:
        raise InvalidInput("rtmp_url has no host")
    return parts.hostname, port or _RTMP_PORTS[scheme]


async def check_rtmp_url(settings: Settings, url: str) -> None:
    """Refuse (``InvalidInput``) an RTMP URL that is not rtmp(s) or whose host resolves to a non-public address."""
    host, port = rtmp_host_port(url)
    await check_host(OutboundPolicy.from_settings(settings), host, port, "rtmp_url")


def storage_hosts(config: dict[str, Any]) -> list[tuple[str, int, str]]:
    """The (host, port, field) a plaintext ``storage_config`` makes roomtape connect to, where the client chose it.

    AWS without an ``endpoint`` (and GCS/Azure without one) go to the cloud's own public hosts; only the
    parts a client can point elsewhere are listed.
    """
    kind = config.get("type") or "local"
    urls: list[tuple[str, str]] = []
    endpoint = config.get("endpoint")
    if kind in ("aws", "digitalocean", "s3", "gcs", "azure") and endpoint:
        urls.append((str(endpoint), "storage_config.endpoint"))
    elif kind == "digitalocean":
        urls.append((f"https://{config.get('region') or 'nyc3'}.digitaloceanspaces.com", "storage_config.region"))
    elif kind == "azure" and config.get("access_key"):
        urls.append((f"https://{config['access_key']}.blob.core.windows.net", "storage_config account"))
    out = [(*target, what) for url, what in urls if (target := _host_port(url)) is not None]
    if kind == "sftp":
        out.append((str(config.get("host") or ""), int(config.get("port") or 22), "storage_config.host"))
    return out


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects like httpcore's own backend, then refuses a peer address the policy does not allow."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        peer = stream.get_extra_info("server_addr")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._policy.allows(address):
            await stream.aclose()
            raise httpcore.ConnectError(
                f"refused: {host} resolved to {address or 'an unknown address'}, which is not a public address"
            )
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("refused: unix sockets are not an outbound target")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_client(settings: Settings, timeout: float = 10.0) -> httpx.AsyncClient:
    """An HTTP client that connects only where :class:`OutboundPolicy` allows, checked on every connection.

    It follows no redirects and ignores proxy environment variables (a proxy would hide the peer address).
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    pool = transport._pool  # httpx builds the httpcore pool; give it the checking network backend
    if not hasattr(pool, "_network_backend"):  # pragma: no cover - a changed httpcore must not go unguarded
        raise RuntimeError("httpcore's connection pool changed: cannot guard outbound connections")
    pool._network_backend = _CheckedBackend(OutboundPolicy.from_settings(settings))
    return httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
    )
