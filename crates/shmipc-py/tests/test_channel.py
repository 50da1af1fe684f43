"""Channels: spsc (zero copy) and pubsub, with the CLI, across processes."""

import signal
import subprocess
import threading

import numpy as np
import pytest

import shmipc
from conftest import run_cli, wait_until


def test_spsc_send_recv_sample_is_read_only_buffer(name):
    tx = shmipc.Producer(name, capacity=8, slot_size=64)
    rx = shmipc.Consumer(name)
    tx.send(b"hello")
    tx.send(bytearray(b"world"))
    s = rx.recv(timeout=5)
    assert bytes(s) == b"hello" and len(s) == 5
    mv = memoryview(s)
    assert mv.readonly
    with pytest.raises(TypeError):
        mv[0] = 0
    # The next recv hands the slot back; not while a buffer still uses it.
    with pytest.raises(BufferError, match="exported"):
        rx.recv(timeout=5)
    mv.release()
    s2 = rx.recv(timeout=5)
    assert bytes(s2) == b"world"
    with pytest.raises(ValueError, match="released"):
        bytes(s)
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0.05)
    with pytest.raises(ValueError, match="does not fit"):
        tx.send(b"x" * 65)


def test_spsc_loan_is_writable_buffer(name):
    tx = shmipc.Producer(name, capacity=4, slot_size=4096)
    rx = shmipc.Consumer.open(name)
    with tx.loan(8 * 16) as loan:
        a = np.frombuffer(loan, dtype=np.float64)
        a[:] = np.arange(16)
        del a
    loan = tx.loan(10)
    mv = memoryview(loan)
    mv[:3] = b"abc"
    with pytest.raises(BufferError):
        loan.send()
    mv.release()
    loan.send(3)
    with pytest.raises(ValueError, match="already sent"):
        loan.send()
    with rx.recv(timeout=5) as s:
        arr = np.frombuffer(s, dtype=np.float64)
        assert not arr.flags.writeable and arr[15] == 15.0
        del arr
    assert bytes(rx.recv(timeout=5)) == b"abc"
    # A discarded loan sends nothing.
    with pytest.raises(RuntimeError):
        with tx.loan(4) as l2:
            memoryview(l2)[:] = b"zzzz"
            raise RuntimeError("abandon")
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0.05)


def test_spsc_disconnect_and_iteration(name):
    tx = shmipc.Producer(name)
    rx = shmipc.Consumer(name)
    for i in range(5):
        tx.send(str(i).encode())
    tx.close()
    assert [bytes(m) for m in rx] == [b"0", b"1", b"2", b"3", b"4"]
    with pytest.raises(shmipc.Disconnected):
        rx.recv(timeout=1)


def test_spsc_between_python_processes_numpy_frames(name, child):
    rx = shmipc.Consumer(name, capacity=4, slot_size=1 << 20)
    c = child(
        """
        import sys, numpy as np, shmipc
        tx = shmipc.Producer.open(sys.argv[1])
        for i in range(20):
            with tx.loan(1 << 20) as loan:
                np.frombuffer(loan, dtype=np.uint32)[:] = i
        """,
        name,
    )
    total = 0
    for i, s in enumerate(rx):
        a = np.frombuffer(s, dtype=np.uint32)
        assert a.size == (1 << 18) and a[0] == i and a[-1] == i
        total += 1
        del a
    assert total == 20
    assert c.wait()[0] == 0


def test_busy_endpoint(name):
    tx = shmipc.Producer(name)
    with pytest.raises(shmipc.Busy, match="producer"):
        shmipc.Producer.open(name)
    tx.close()


def test_pubsub_python_to_python(name):
    sub_a = shmipc.Subscriber(name)
    pub = shmipc.Publisher(name)
    sub_b = shmipc.Subscriber.open(name)
    assert pub.subscribers() == 2
    pub.send(b"tick")
    with pub.loan(4) as loan:
        memoryview(loan)[:] = b"tock"
    for s in (sub_a, sub_b):
        m = s.recv(timeout=5)
        assert bytes(m) == b"tick" and m.lost == 0 and m.seq == 0
        assert memoryview(m).readonly
        n = s.recv(timeout=5)
        assert bytes(n) == b"tock" and n.seq == 1
    with pytest.raises(TimeoutError):
        sub_a.recv(timeout=0.05)
    pub.close()
    with pytest.raises(shmipc.Disconnected):
        sub_a.recv(timeout=5)


def test_pubsub_sample_reads_shared_memory_in_place(name):
    """A received sample (and a NumPy array over it) is the topic's shared memory
    itself: a write by another mapping of the segment shows through it, which a
    copy would not (and is what the trust model says a hostile peer can do)."""
    pub = shmipc.Publisher(name, slot_size=256)
    sub = shmipc.Subscriber(name)
    pattern = bytes(range(7, 7 + 64))
    pub.send(pattern)
    s = sub.recv(timeout=5)
    arr = np.frombuffer(s, dtype=np.uint8)
    assert not arr.flags.writeable and bytes(arr) == pattern
    seg = shmipc.Segment.open(name, access="rw")
    view = seg.map()
    at = bytes(view).find(pattern)
    assert at > 0, "the payload is in the topic's segment"
    view.write(at, b"\xff" * 4)  # what only a hostile peer would do
    assert bytes(arr[:4]) == b"\xff" * 4 and bytes(s)[4:] == pattern[4:]
    del arr
    s.release()
    view.close()
    seg.close()


def test_pubsub_loan_is_shared_memory(name):
    """A loan is a writable buffer over a chunk of the topic (zero copy): what
    NumPy writes into it is in the segment before it is sent."""
    pub = shmipc.Publisher(name, slot_size=4096)
    sub = shmipc.Subscriber(name)
    frame = (np.arange(1024, dtype=np.uint32) * 2654435761).astype(np.uint32)
    loan = pub.loan(frame.nbytes)
    dst = np.frombuffer(loan, dtype=np.uint32)
    assert dst.flags.writeable
    dst[:] = frame
    seg = shmipc.Segment.open(name, access="r")
    view = seg.map()
    assert bytes(view).find(frame.tobytes()) > 0
    view.close()
    seg.close()
    with pytest.raises(BufferError, match="exported"):
        loan.send()
    del dst
    with pytest.raises(ValueError, match="outstanding"):
        pub.send(b"x")  # one loan at a time
    loan.send()
    with pytest.raises(ValueError, match="already sent"):
        loan.send()
    got = sub.recv(timeout=5)
    assert np.array_equal(np.frombuffer(got, dtype=np.uint32), frame)
    # An exception in the with block discards the loan: nothing is published.
    with pytest.raises(RuntimeError):
        with pub.loan(3) as loan:
            memoryview(loan)[:] = b"bad"
            raise RuntimeError("abandon")
    pub.send(b"good")
    assert bytes(sub.recv(timeout=5)) == b"good"
    with pytest.raises(ValueError, match="does not fit"):
        pub.loan(4097)


def test_pubsub_held_bound_and_release(name):
    pub = shmipc.Publisher(name, max_held=2)
    sub = shmipc.Subscriber(name)
    assert sub.max_held == 2
    for i in range(4):
        pub.send(bytes([i]))
    a = sub.recv(timeout=5)
    b = sub.recv(timeout=5)
    assert sub.held == 2
    with pytest.raises(shmipc.TooManyHeld, match="max_held"):
        sub.recv(timeout=5)
    a.release()
    assert sub.held == 1
    with pytest.raises(ValueError, match="released"):
        bytes(a)
    c = sub.recv(timeout=5)
    assert bytes(c) == b"\x02"
    # Not handed back while a buffer still points into it.
    mv = memoryview(b)
    with pytest.raises(BufferError, match="exported"):
        b.release()
    with pytest.raises(BufferError, match="exported"):
        sub.close()
    mv.release()
    del c  # freeing the Python object releases the sample
    assert sub.held == 1
    assert sub.recv_bytes(timeout=5) == b"\x03"  # a copy: holds nothing
    assert sub.held == 1
    with b:
        assert bytes(b) == b"\x01"
    assert sub.held == 0
    sub.close()
    with pytest.raises(ValueError, match="closed"):
        sub.recv(timeout=1)


def test_pubsub_block_is_lossless_by_default(name):
    pub = shmipc.Publisher(name, capacity=4)
    sub = shmipc.Subscriber(name)
    for i in range(4):
        pub.send(bytes([i]), timeout=5)
    with pytest.raises(TimeoutError):
        pub.send(b"no room", timeout=0.05)  # the subscriber has not kept up
    assert [sub.recv_bytes(timeout=5) for _ in range(4)] == [bytes([i]) for i in range(4)]
    pub.send(b"room again", timeout=5)
    assert sub.recv_bytes(timeout=5) == b"room again"


def test_cli_publisher_to_python_subscriber(name, shmipc_bin):
    sub = shmipc.Subscriber(name)  # creates the topic, as `shmipc pub` would
    run_cli(shmipc_bin, "pub", name, "one", "two", "three")
    got = [bytes(m) for m in sub]  # until the CLI publisher has gone
    assert got == [b"one", b"two", b"three"]


def test_cli_publisher_blocks_for_python_subscriber(name, shmipc_bin):
    """More messages than the ring holds: the (lossless) CLI publisher waits for the
    Python subscriber, which gets every one, in order, read in place."""
    sub = shmipc.Subscriber(name, capacity=16)
    lines = "".join(f"{i}\n" for i in range(1000))
    cli = subprocess.Popen(
        [shmipc_bin, "pub", name, "--timeout", "60s"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cli.stdin.write(lines)
        cli.stdin.close()
        got = []
        for m in sub:  # until the CLI publisher has gone
            assert m.lost == 0
            got.append(int(bytes(m)))
        cli.wait(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, cli.stderr.read()
    assert got == list(range(1000))


def test_python_publisher_to_cli_subscriber(name, shmipc_bin):
    pub = shmipc.Publisher(name)
    cli = subprocess.Popen(
        [shmipc_bin, "sub", name, "-n", "4", "--timeout", "30s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: pub.subscribers() >= 1, what="the CLI to subscribe")
        for m in (b"alpha", b"beta", np.frombuffer(b"gamma", dtype=np.uint8)):
            pub.send(m)
        with pub.loan(5) as loan:  # zero copy: written in place
            np.frombuffer(loan, dtype=np.uint8)[:] = np.frombuffer(b"delta", dtype=np.uint8)
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    assert out.split() == ["alpha", "beta", "gamma", "delta"]


def test_pubsub_overwrite_reports_lost_and_history(name):
    pub = shmipc.Publisher(name, capacity=4, slot_size=16, overflow="overwrite")
    sub = shmipc.Subscriber(name)
    for i in range(10):
        pub.send(bytes([i]))  # never waits in overwrite mode
    first = sub.recv(timeout=5)
    assert first.lost > 0 and bytes(first) == bytes([first.lost])
    assert first.seq == first.lost
    got = [bytes(first)[0]]
    while got[-1] != 9:
        m = sub.recv(timeout=5)
        assert m.lost == 0
        got.append(bytes(m)[0])
    assert got == list(range(first.lost, 10))
    late = shmipc.Subscriber(name, history=2)
    assert [bytes(late.recv(timeout=5)) for _ in range(2)] == [bytes([8]), bytes([9])]


def test_cli_overwrite_publisher_lost_count_in_python(name, shmipc_bin):
    """`shmipc pub --overwrite` never waits: a Python subscriber that reads only
    after it finished gets the newest messages and is told how many it lost."""
    sub = shmipc.Subscriber(name, capacity=16, overflow="overwrite")
    lines = "".join(f"{i}\n" for i in range(200))
    run_cli(shmipc_bin, "pub", name, "--overwrite", input=lines)
    got, lost = [], 0
    for m in sub:  # until the CLI publisher has gone
        lost += m.lost
        got.append(int(bytes(m)))
    assert lost > 0 and got[0] == lost and got == list(range(lost, 200))


def test_pubsub_recv_releases_the_gil_and_samples_cross_threads(name):
    pub = shmipc.Publisher(name)
    sub = shmipc.Subscriber(name)
    started = threading.Event()
    got = []

    def waiter():
        started.set()
        got.append(sub.recv(timeout=60))  # the sample outlives this thread

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(30)
    # Python runs here while the other thread waits in Rust; if the wait held the
    # GIL, this thread would only get here after the 60 s timeout.
    assert sum(i * i for i in range(200_000)) > 0
    pub.send(b"across threads")
    t.join(60)
    assert bytes(got[0]) == b"across threads" and sub.held == 1
    got.clear()  # released on this thread
    assert sub.held == 0


def test_ctrl_c_interrupts_a_pubsub_recv(name, child):
    c = child(
        """
        import sys, shmipc
        sub = shmipc.Subscriber(sys.argv[1])
        try:
            print("waiting", flush=True)  # inside the try: SIGINT may come at once
            sub.recv()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """,
        name,
    )
    c.expect("waiting")
    c.proc.send_signal(signal.SIGINT)
    c.expect("interrupted")
    assert c.wait()[0] == 0


def test_numpy_frames_from_a_python_publisher_process(name, child):
    """Another Python process fills loaned chunks with NumPy; this one reads them in
    place with NumPy."""
    sub = shmipc.Subscriber(name, capacity=4, slot_size=1 << 20)
    c = child(
        """
        import sys, numpy as np, shmipc
        pub = shmipc.Publisher.open(sys.argv[1])
        for i in range(8):  # twice the ring: lossless, waits for the reader
            with pub.loan(1 << 20, timeout=30) as loan:
                np.frombuffer(loan, dtype=np.uint64).fill(i)
        print("sent", flush=True)
        """,
        name,
    )
    for i in range(8):
        with sub.recv(timeout=30) as s:
            a = np.frombuffer(s, dtype=np.uint64)
            assert a.size == (1 << 17) and int(a.min()) == int(a.max()) == i
            del a
    c.expect("sent")
    assert c.wait()[0] == 0
