"""Clocks: turning times an agent reports into instants on the server's clock and the session clock.

An agent stamps items with its own wall clock, which may differ from the server's by seconds. The offset is
measured once when the agent joins (a ping exchange: the agent sends its time ``t_agent``, the server answers
at ``t_server`` and the round trip ``rtt`` bounds the error) and every later agent time is corrected by it:

    server = agent - offset,      offset = agent clock - server clock

The session clock counts seconds from the session's start on the server's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from roomtape.errors import InvalidInput

ClockName = Literal["session", "epoch", "agent"]
"""What a reported time is measured on: seconds since the session's start, server Unix time, or the agent's
own Unix time (corrected by the measured :class:`ClockOffset`)."""


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """How far an agent's clock is ahead of the server's, in seconds (negative: behind)."""

    seconds: float = 0.0
    """agent clock - server clock."""
    uncertainty: float = 0.0
    """Half the round trip of the measurement: the true offset is within ``seconds ± uncertainty``."""

    @classmethod
    def from_ping(cls, agent_sent: float, server_time: float, agent_received: float) -> ClockOffset:
        """The offset from one ping exchange.

        The agent sent at ``agent_sent``, the server stamped ``server_time``, the answer came back at
        ``agent_received`` (both agent times on the agent's clock).

        Assumes the two legs took equally long (NTP's assumption), so the server stamped at the midpoint.

        Raises:
            InvalidInput: The answer arrived before the ping was sent.
        """
        if agent_received < agent_sent:
            raise InvalidInput("ping answer received before it was sent")
        midpoint = (agent_sent + agent_received) / 2
        return cls(seconds=midpoint - server_time, uncertainty=(agent_received - agent_sent) / 2)

    @classmethod
    def best_of(cls, offsets: list[ClockOffset]) -> ClockOffset:
        """The measurement with the shortest round trip, which bounds the error best.

        Raises:
            InvalidInput: No measurement was given.
        """
        if not offsets:
            raise InvalidInput("no clock offset measurement")
        return min(offsets, key=lambda o: o.uncertainty)

    def to_server(self, agent_time: float) -> float:
        """An instant on the agent's clock, on the server's clock."""
        return agent_time - self.seconds


def to_epoch(value: float, clock: ClockName, session_start_epoch: float, offset: ClockOffset) -> float:
    """An instant reported on ``clock``, as server Unix seconds."""
    if clock == "session":
        return session_start_epoch + value
    if clock == "agent":
        return offset.to_server(value)
    return value


def to_session(epoch: float, session_start_epoch: float) -> float:
    """Server Unix seconds as seconds on the session clock."""
    return epoch - session_start_epoch
