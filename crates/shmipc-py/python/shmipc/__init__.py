"""Named shared memory with Win32 lifetime, robust inter-process locks and
zero-copy channels, for Python (bindings of the shmipc Rust library).

* ``Segment`` / ``View``: named segments (``/dev/shm/NAME`` on Linux, shared with
  ``multiprocessing.shared_memory`` by name) that vanish when the last holder
  closes them *or dies*; views support the buffer protocol (``memoryview``,
  ``numpy.frombuffer``: no copy).
* ``Mutex``, ``Semaphore``, ``Event``: named, inter-process; a mutex whose holder
  died raises ``OwnerDied`` with the lock held.
* ``Producer``/``Consumer`` (spsc) and ``Publisher``/``Subscriber`` (pubsub), both
  zero copy: ``send``, ``loan`` (a writable buffer over the channel's memory),
  ``recv`` (a read-only ``Sample`` read in place), iteration.

Trust model: memory shared with other processes can be written by them at any
time. shmipc never lets memory you hold be unmapped under you (``close()``
refuses while a memoryview or array uses it), and validates everything it reads
from shared memory itself; the bytes you read through a buffer are as
trustworthy as the processes that map the segment. Channel samples follow the
zero-copy contract: a correct peer does not write memory it lent you; a buggy or
hostile process that maps the channel can, and you then read bytes that may
change while you read them (never memory outside the sample). Validate what you
parse from untrusted peers, or copy with ``bytes(sample)`` first.
"""

from ._shmipc import (
    Busy,
    Consumer,
    Corrupt,
    Disconnected,
    Error,
    Event,
    Loan,
    Mutex,
    OwnerDied,
    Producer,
    Publisher,
    Sample,
    Segment,
    Semaphore,
    Subscriber,
    TooManyHeld,
    View,
)

__all__ = [
    "Busy",
    "Consumer",
    "Corrupt",
    "Disconnected",
    "Error",
    "Event",
    "Loan",
    "Mutex",
    "OwnerDied",
    "Producer",
    "Publisher",
    "Sample",
    "Segment",
    "Semaphore",
    "Subscriber",
    "TooManyHeld",
    "View",
]
