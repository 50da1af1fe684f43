"""A child forked while the parent has channel endpoints open inherits copies of
them and of the samples and loans they lent: the child must not use them (a recv
would take the parent's messages, a send would race the parent's) and dropping
them must not hand the parent's memory back to the channel (the publisher would
then overwrite a sample the parent is still reading in place)."""

import json
import os

import pytest

import shmipc

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def in_child(body):
    """Runs `body()` in a forked child and returns the list of strings it
    returned. The child reports through a pipe and leaves with os._exit, so only
    what `body` drops explicitly is dropped there."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            out = body()
        except BaseException as e:  # report anything, never return into pytest
            out, code = [f"child raised {type(e).__name__}: {e}"], 1
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        got = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"the child did not exit normally: {status}"
    return json.loads(got)


def refused(call):
    """'forked' if `call()` raises the forked-child error naming this process's
    parent, else what happened."""
    try:
        call()
    except RuntimeError as e:
        m = str(e)
        ok = (f"belongs to process {os.getppid()}, which this process was forked from" in m
              and "open a new" in m)
        return "forked" if ok else f"RuntimeError?: {m}"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "ran"


def gone_from_dev_shm(name):
    return not os.path.isdir("/dev/shm") or not [f for f in os.listdir("/dev/shm") if name in f]


def test_forked_child_cannot_use_or_release_a_pubsub_sample(name):
    pub = shmipc.Publisher(name, capacity=4, slot_size=16, max_subscribers=1, overflow="overwrite", max_held=2)
    sub = shmipc.Subscriber(name)
    pub.send(b"parent's sample")
    s = sub.recv(timeout=5)
    assert bytes(s) == b"parent's sample"
    pub.send(b"for the parent")

    # A child that drops its copies (del, garbage collection) must not release
    # the parent's hold.
    def drop_all():
        nonlocal s, sub
        del s
        del sub
        import gc

        gc.collect()
        return []

    assert in_child(drop_all) == []
    # The parent's hold stands: the overwriting publisher reuses every other chunk
    # but not the one the parent reads.
    for i in range(200):
        pub.send(bytes([i]) * 15)
    assert bytes(s) == b"parent's sample"
    assert sub.held == 1

    # Every use in a child is refused, naming the parent.
    def child():
        out = [
            refused(lambda: sub.recv(timeout=0)),
            refused(lambda: sub.recv_bytes(timeout=0)),
            refused(lambda: sub.held),
            refused(lambda: s.release()),
            refused(lambda: memoryview(s)),
            refused(lambda: s.__exit__(None, None, None)),
            refused(sub.close),
        ]
        return out

    got = in_child(child)
    assert got == ["forked"] * 7, got
    # The parent's subscriber kept its place: nothing was taken by a child.
    n = sub.recv(timeout=5)
    assert n.lost > 0 or bytes(n) == b"for the parent"
    n.release()
    s.release()
    assert sub.held == 0
    sub.close()
    pub.close()
    assert gone_from_dev_shm(name)


def test_forked_child_cannot_use_or_release_an_spsc_sample(name):
    tx = shmipc.Producer(name, capacity=2, slot_size=16)
    rx = shmipc.Consumer(name)
    tx.send(b"first")
    tx.send(b"second")
    s = rx.recv(timeout=5)
    assert bytes(s) == b"first"

    # A child that drops its copies (del, garbage collection) hands nothing back.
    def drop_all():
        nonlocal s, rx
        del s
        del rx
        import gc

        gc.collect()
        return []

    assert in_child(drop_all) == []
    # The parent's sample still occupies its slot: the ring (2 slots) is full.
    with pytest.raises(TimeoutError):
        tx.send(b"overwrite", timeout=0)
    assert bytes(s) == b"first"

    # Every use in a child is refused, naming the parent.
    def child():
        out = [
            refused(lambda: rx.recv(timeout=0)),
            refused(rx.producer_present),
            refused(lambda: s.release()),
            refused(lambda: memoryview(s)),
            refused(lambda: next(iter(rx))),
            refused(rx.close),
        ]
        return out

    assert in_child(child) == ["forked"] * 6
    s.release()
    assert bytes(rx.recv(timeout=5)) == b"second"  # the child took nothing
    tx.send(b"third", timeout=5)
    assert bytes(rx.recv(timeout=5)) == b"third"
    rx.close()
    tx.close()
    assert gone_from_dev_shm(name)


def test_forked_child_cannot_use_an_spsc_producer_or_its_loan(name):
    tx = shmipc.Producer(name, capacity=4, slot_size=16)
    rx = shmipc.Consumer(name)
    loan = tx.loan(6)
    memoryview(loan)[:] = b"parent"

    # A child that drops its copies (del, garbage collection) hands nothing back.
    def drop_all():
        nonlocal loan, tx
        del loan
        del tx
        import gc

        gc.collect()
        return []

    assert in_child(drop_all) == []

    # Every use in a child is refused, naming the parent.
    def child():
        out = [
            refused(lambda: loan.send()),
            refused(loan.discard),
            refused(lambda: memoryview(loan)),
            refused(lambda: loan.__exit__(None, None, None)),
            refused(lambda: tx.send(b"child", timeout=0)),
            refused(lambda: tx.loan(5, timeout=0)),
            refused(tx.consumer_present),
            refused(tx.close),
        ]
        return out

    assert in_child(child) == ["forked"] * 8
    loan.send()
    tx.send(b"after", timeout=5)
    assert bytes(rx.recv(timeout=5)) == b"parent"
    assert bytes(rx.recv(timeout=5)) == b"after"
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0)
    rx.close()
    tx.close()
    assert gone_from_dev_shm(name)


def test_forked_child_cannot_use_a_publisher_or_its_loan(name):
    pub = shmipc.Publisher(name, capacity=4, slot_size=16)
    sub = shmipc.Subscriber(name)
    loan = pub.loan(6)
    memoryview(loan)[:] = b"parent"

    # A child that drops its copies (del, garbage collection) hands nothing back.
    def drop_all():
        nonlocal loan, pub
        del loan
        del pub
        import gc

        gc.collect()
        return []

    assert in_child(drop_all) == []

    # Every use in a child is refused, naming the parent.
    def child():
        out = [
            refused(lambda: loan.send()),
            refused(loan.discard),
            refused(lambda: memoryview(loan)),
            refused(lambda: pub.send(b"child", timeout=0)),
            refused(lambda: pub.loan(5, timeout=0)),
            refused(pub.subscribers),
            refused(pub.close),
        ]
        return out

    assert in_child(child) == ["forked"] * 7
    loan.send()
    pub.send(b"after", timeout=5)
    assert bytes(sub.recv(timeout=5)) == b"parent"
    assert bytes(sub.recv(timeout=5)) == b"after"
    with pytest.raises(TimeoutError):
        sub.recv(timeout=0)
    assert pub.subscribers() == 1
    sub.close()
    pub.close()
    assert gone_from_dev_shm(name)
