"""spsc between Python and a program using the Rust library directly, both ways."""

import subprocess

import numpy as np

import shmipc


def test_rust_producer_to_python_consumer(name, spsc_peer):
    rx = shmipc.Consumer(name, capacity=16, slot_size=4096)  # holds the channel
    r = subprocess.run([spsc_peer, "produce", name, "5"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # The producer has gone: iteration yields what it sent, then stops.
    got = [bytes(s).decode() for s in rx]
    assert got == [f"rust-{i}" for i in range(5)]


def test_python_producer_to_rust_consumer(name, spsc_peer):
    tx = shmipc.Producer(name, capacity=16, slot_size=4096)
    p = subprocess.Popen(
        [spsc_peer, "consume", name, "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        tx.send(b"py-0")
        with tx.loan(4) as loan:
            memoryview(loan)[:] = b"py-1"
        tx.send(np.frombuffer(b"py-2", dtype=np.uint8))
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert out.split() == ["ready", "py-0", "py-1", "py-2"]
