"""Channels: spsc (zero copy) and pubsub, with the CLI, across processes."""

import subprocess

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
        assert bytes(m) == b"tick" and m.lost == 0 and memoryview(m).readonly
        assert bytes(s.recv(timeout=5)) == b"tock"
    with pytest.raises(TimeoutError):
        sub_a.recv(timeout=0.05)
    pub.close()
    with pytest.raises(shmipc.Disconnected):
        sub_a.recv(timeout=5)


def test_cli_publisher_to_python_subscriber(name, shmipc_bin):
    sub = shmipc.Subscriber(name)  # creates the topic, as `shmipc pub` would
    run_cli(shmipc_bin, "pub", name, "one", "two", "three")
    got = [bytes(m) for m in sub]  # until the CLI publisher has gone
    assert got == [b"one", b"two", b"three"]


def test_python_publisher_to_cli_subscriber(name, shmipc_bin):
    pub = shmipc.Publisher(name)
    cli = subprocess.Popen(
        [shmipc_bin, "sub", name, "-n", "3", "--timeout", "30s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: pub.subscribers() >= 1, what="the CLI to subscribe")
        for m in (b"alpha", b"beta", np.frombuffer(b"gamma", dtype=np.uint8)):
            pub.send(m)
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    assert out.split() == ["alpha", "beta", "gamma"]


def test_pubsub_overwrite_reports_lost_and_history(name):
    pub = shmipc.Publisher(name, capacity=4, slot_size=16)
    sub = shmipc.Subscriber(name)
    for i in range(10):
        pub.send(bytes([i]))
    first = sub.recv(timeout=5)
    assert first.lost > 0 and bytes(first) == bytes([first.lost])
    got = [bytes(first)[0]]
    while got[-1] != 9:
        m = sub.recv(timeout=5)
        assert m.lost == 0
        got.append(bytes(m)[0])
    assert got == list(range(first.lost, 10))
    late = shmipc.Subscriber(name, history=2)
    assert [bytes(late.recv(timeout=5)) for _ in range(2)] == [bytes([8]), bytes([9])]
