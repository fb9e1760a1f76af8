"""Run an iterator one step ahead in a background thread, so decoding the next frame overlaps analysing this one.

PyAV decodes, and MediaPipe and torch compute, with the GIL released, so on two cores the decoder works through
the frames between two samples while the face models run on the last one. A video scan costs about
max(decode, analysis) instead of their sum.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield what `items` yields, in order, computed up to `depth` items ahead. An exception raised by `items`
    is raised here, at the point where its item would have come. Closing this generator early (the consumer
    failed or stopped) stops the producer and closes `items`, so files are not left open."""
    box: queue.Queue = queue.Queue(maxsize=depth)  # bounds memory: at most `depth` decoded frames wait
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as err:  # handed to the consumer, which raises it in its own thread
            put((_DONE, err))
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    worker = threading.Thread(target=produce, name="deepscreen-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, err = box.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()
