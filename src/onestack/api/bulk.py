"""Bulk work — list pages — off the event loop, in a small thread pool of its own.

Every service of ``onestack up`` shares one event loop and one interpreter lock. A list page
(load a few hundred rows, shape them, encode the JSON) is milliseconds of pure Python; on the
loop it delays every other request of every service, and in the loop's default executor
(``cloud.EXECUTOR_THREADS`` threads, sized for blocking I/O and bcrypt, which release the
lock) forty concurrent pages become forty threads handing the lock round in 5 ms turns, so
the loop waits for it behind all of them: under 40 clients listing 200-server pages, version
documents and health checks took 0.5–1 s (``bench/health_bench.py``).

:func:`run_bulk` runs such work in :data:`BULK_THREADS` threads instead, so that at most that
many compete with the loop for the lock while the rest of the pages wait their turn in the
pool's queue (as a busy server's requests do in its listen backlog). With the lock held by
one thread at a time, more threads would not list faster; two overlap one page's database
I/O with another's Python. A handler gives the whole page to :func:`run_bulk` — query,
shaping and the JSON encoding (:func:`json_response`) — so the loop only writes the bytes.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from onestack.api.app import FastJSON

#: Threads doing bulk work, per process.
BULK_THREADS = 2

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(BULK_THREADS, thread_name_prefix="onestack-bulk")
    return _pool


async def run_bulk(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking, CPU-heavy ``fn`` (a list page) in the bulk pool with the caller's
    context variables; its exceptions (``APIError`` included) propagate to the caller."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(_executor(), call)


def json_response(doc: Any, status_code: int = 200) -> FastJSON:
    """A JSON response rendered now (call it in the bulk thread: the encoding of a big page
    then happens there, not on the loop)."""
    return FastJSON(doc, status_code=status_code)
