"""Polls of a live room: created through the API (``active_session.create_poll``), voted on over signaling.

A poll lives as long as its room's session: it is state of the meeting in progress, like who is in it,
and is not stored. ``anonymous`` keeps voters' names out of what anyone sees; ``hide_votes`` shows the
counts only to those who have voted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Poll", "PollError"]


class PollError(ValueError):
    """A vote that cannot be counted: unknown option, or a second vote."""


@dataclass(eq=False)
class Poll:
    """One poll and its votes."""

    question: str
    """What is asked."""
    options: list[str]
    """The answers to choose from, in order."""
    anonymous: bool = False
    hide_votes: bool = False
    created_by: str | None = None
    """Who created it (``"ORGANIZATION"`` for the API)."""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    votes: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    """Option index and display name by participant id."""

    def vote(self, participant_id: str, name: str | None, option: int) -> None:
        """Count one participant's vote.

        Raises:
            PollError: the option does not exist, or the participant has voted already.
        """
        if not 0 <= option < len(self.options):
            raise PollError(f"poll {self.id} has options 0..{len(self.options) - 1}, not {option}")
        if participant_id in self.votes:
            raise PollError(f"you have voted in poll {self.id} already")
        self.votes[participant_id] = (option, name)

    def to_json(self, viewer: str | None = None) -> dict[str, Any]:
        """The poll as the SDK's ``DataPoll``, as ``viewer`` (a participant id; None: the API) may see it."""
        show = not self.hide_votes or viewer is None or viewer in self.votes
        options = []
        for index, text in enumerate(self.options):
            voters = [(pid, name) for pid, (choice, name) in self.votes.items() if choice == index]
            options.append(
                {
                    "text": text,
                    "count": len(voters) if show else 0,
                    "votes": [] if self.anonymous or not show else [{"id": p, "name": n or ""} for p, n in voters],
                }
            )
        return {
            "id": self.id,
            "question": self.question,
            "options": options,
            "anonymous": self.anonymous,
            "hide_votes": self.hide_votes,
            "created_by": self.created_by,
            "voted": [] if self.anonymous else list(self.votes),
        }
