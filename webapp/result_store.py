"""Results kept on the server for re-rendering and the faithfulness panel, bounded by bytes.

A session's ``gr.State`` holds only the key of its result; the result itself lives here, least
recently used first out, so that memory does not grow with the number of visitors.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ResultStore(Generic[T]):
    """A thread-safe LRU of results under a total byte budget and a maximum age since last use."""

    def __init__(
        self, max_bytes: int, max_age_s: float, size_of: Callable[[T], int], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes, self.max_age_s = max_bytes, max_age_s
        self._size_of, self._clock = size_of, clock
        self._items: OrderedDict[str, tuple[T, int, float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, value: T) -> str:
        """Keep ``value`` and return its new key; older results leave to stay within the budget.
        A result larger than the whole budget is not kept (its key will not be found)."""
        key = secrets.token_urlsafe(16)
        size = int(self._size_of(value))
        with self._lock:
            if size <= self.max_bytes:
                self._items[key] = (value, size, self._clock())
                self._bytes += size
            self._evict()
        return key

    def get(self, key: object) -> T | None:
        """The result kept under ``key`` (now the most recently used), or None if it has gone."""
        if not isinstance(key, str):
            return None
        with self._lock:
            self._evict()
            item = self._items.get(key)
            if item is None:
                return None
            self._items[key] = (item[0], item[1], self._clock())  # last use: kept longest
            self._items.move_to_end(key)
            return item[0]

    @property
    def nbytes(self) -> int:
        """The bytes held now."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _evict(self) -> None:
        oldest = self._clock() - self.max_age_s
        while self._items:
            key, (_, size, stamp) = next(iter(self._items.items()))
            if self._bytes <= self.max_bytes and stamp >= oldest:
                break
            del self._items[key]
            self._bytes -= size
