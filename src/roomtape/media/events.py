"""A small typed event emitter: event names are a closed ``Literal`` type, payloads one class."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["EventEmitter"]

logger = logging.getLogger(__name__)

NameT = TypeVar("NameT", bound=str)
EventT = TypeVar("EventT")


class EventEmitter(Generic[NameT, EventT]):
    """Calls the callbacks registered for an event name, in registration order.

    A callback that raises is logged and does not stop the others, nor the code that emitted: room events
    are emitted from the media path.
    """

    def __init__(self) -> None:
        self._callbacks: dict[NameT, list[Callable[[EventT], object]]] = {}

    def on(self, name: NameT, callback: Callable[[EventT], object]) -> Callable[[EventT], object]:
        """Register ``callback`` for ``name``; usable as a decorator.

        Args:
            name: Event name.
            callback: Called with the event.

        Returns:
            The callback, unchanged.
        """
        self._callbacks.setdefault(name, []).append(callback)
        return callback

    def off(self, name: NameT, callback: Callable[[EventT], object]) -> None:
        """Unregister a callback; does nothing if it was not registered.

        Args:
            name: Event name.
            callback: The callback given to :meth:`on`.
        """
        callbacks = self._callbacks.get(name, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def emit(self, name: NameT, event: EventT) -> None:
        """Call every callback registered for ``name`` with ``event``.

        Args:
            name: Event name.
            event: The payload.
        """
        for callback in tuple(self._callbacks.get(name, ())):
            try:
                callback(event)
            except Exception:
                logger.exception("callback for event %r failed", name)
