"""What the delivery and webhook loops share: rows of a ledger claimed when due, one task an
item, a few at once, released on stop so that another process (or the next start) sends them.

A subclass says how its ledger claims, releases and names its rows, and what one attempt
does; this class keeps the tasks, the wake-ups and the polling.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import Generic, TypeVar

IDLE_POLL_S = 1.0  # another process's work (a job's end, a resend) is seen within this
Key = TypeVar("Key", bound=Hashable)
Item = TypeVar("Item")


class ClaimLoop(ABC, Generic[Key, Item]):
    """Claims due items and attempts each in a task of its own, ``concurrency`` at once."""

    def __init__(self, name: str, concurrency: int) -> None:
        self._name = name
        self._concurrency = concurrency
        self._wake = asyncio.Event()
        self._sending: dict[Key, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def _claim(self, now: float, limit: int) -> list[Item]:
        """Up to ``limit`` items due at ``now``, now this process's (runs in a thread)."""

    @abstractmethod
    def _next_due(self) -> float | None:
        """When the next item falls due; None when none waits (runs in a thread)."""

    @abstractmethod
    def _key(self, item: Item) -> Key: ...

    @abstractmethod
    def _release(self, key: Key) -> None:
        """Due again at once, for any process: this one is stopping."""

    @abstractmethod
    async def _attempt(self, item: Item) -> None:
        """One attempt, its outcome recorded; whatever it raises is logged and recorded by
        :meth:`_stopped_unexpectedly`."""

    @abstractmethod
    def _stopped_unexpectedly(self, item: Item) -> None:
        """Record a bug's outcome (already logged): the item must not stay claimed."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        sending = list(self._sending)
        tasks = [t for t in (self._task, *self._sending.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        for key in sending:
            self._release(key)

    def wake(self) -> None:
        """Look for due items now (a job has just ended)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            free = self._concurrency * 2 - len(self._sending)
            claimed = await asyncio.to_thread(self._claim, time.time(), free) \
                if free > 0 else []
            for item in claimed:
                key = self._key(item)
                if key not in self._sending:
                    self._sending[key] = asyncio.create_task(self._guarded(key, item))
            next_due = await asyncio.to_thread(self._next_due)
            wait = IDLE_POLL_S if next_due is None else next_due - time.time()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.02, min(wait, IDLE_POLL_S)))
            except TimeoutError:
                pass

    async def _guarded(self, key: Key, item: Item) -> None:
        try:
            async with self._slots:
                await self._attempt(item)
        except Exception:  # a bug in one attempt must not stop the others, nor the loop
            self._stopped_unexpectedly(item)
        finally:
            self._sending.pop(key, None)
            self._wake.set()  # its next attempt may be due before the loop would look
