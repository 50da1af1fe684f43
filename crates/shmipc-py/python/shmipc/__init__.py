"""Named shared memory with Win32 lifetime, robust inter-process locks and
zero-copy channels, for Python (bindings of the shmipc Rust library).

* ``Segment`` / ``View``: named segments (``/dev/shm/NAME`` on Linux, shared with
  ``multiprocessing.shared_memory`` by name) that vanish when the last holder
  closes them *or dies*; views support the buffer protocol (``memoryview``,
  ``numpy.frombuffer``: no copy).
* ``Mutex``, ``Semaphore``, ``Event``: named, inter-process; a mutex whose holder
  died raises ``OwnerDied`` with the lock held.
* ``Producer``/``Consumer`` (spsc, zero copy) and ``Publisher``/``Subscriber``
  (pubsub): ``send``, ``loan`` (a writable buffer), ``recv`` (a read-only
  ``Sample``), iteration.

Trust model: memory shared with other processes can be written by them at any
time. shmipc never lets memory you hold be unmapped under you (``close()``
refuses while a memoryview or array uses it), and validates everything it reads
from shared memory itself; the bytes you read through a buffer are as
trustworthy as the processes that map the segment. Channel samples follow the
zero-copy contract: a correct peer does not write a slot it lent you.
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
    "View",
]
