"""Named mutex, semaphore and event: across processes, dead owners, timeouts,
the GIL and Ctrl-C."""

import os
import signal
import threading

import pytest

import shmipc
from conftest import run_cli, wait_until


def test_mutex_create_open_and_with(name):
    m = shmipc.Mutex(name)
    assert m.created and m.name == name
    with pytest.raises(FileExistsError):
        shmipc.Mutex.create(name)
    other = shmipc.Mutex.open(name)
    assert not other.created
    with m:
        assert m.held()
        # Held by this thread: a second object on the same mutex times out (it is
        # the same thread, so it says so at once).
        with pytest.raises(shmipc.Error, match="holds the mutex already"):
            other.acquire(timeout=0.1)
    assert not m.held()
    assert m.acquire(timeout=1)
    m.release()
    with pytest.raises(RuntimeError, match="does not hold"):
        m.release()
    with pytest.raises(FileNotFoundError):
        shmipc.Mutex.open(name + "-none")


def test_mutex_timeout_when_another_process_holds_it(name, child, shmipc_bin):
    m = shmipc.Mutex(name)
    c = child(
        """
        import sys, shmipc
        m = shmipc.Mutex.open(sys.argv[1])
        m.acquire()
        print("locked", flush=True)
        sys.stdin.readline()
        m.release()
        print("released", flush=True)
        sys.stdin.readline()
        """,
        name,
    )
    c.expect("locked")
    with pytest.raises(TimeoutError, match=name):
        m.acquire(timeout=0.2)
    # The CLI's lock waits on the same mutex.
    r = run_cli(shmipc_bin, "lock", name, "--timeout", "200ms", "--", "true", check=False)
    assert r.returncode != 0 and name in r.stderr
    c.proc.stdin.write("\n")
    c.proc.stdin.flush()
    c.expect("released")
    assert m.acquire(timeout=30)
    m.release()
    run_cli(shmipc_bin, "lock", name, "--timeout", "30s", "--", "true")


def test_owner_died_across_python_processes(name, child):
    m = shmipc.Mutex(name)
    c = child(
        """
        import sys, shmipc
        m = shmipc.Mutex(sys.argv[1])
        with m:
            print("inside", flush=True)
            sys.stdin.read()
        """,
        name,
    )
    c.expect("inside")
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(timeout=30)
    with pytest.raises(shmipc.OwnerDied, match="died"):
        m.acquire(timeout=30)
    assert m.held()  # the lock is taken
    # Released without repair: the next locker is told again.
    m.release()
    with pytest.raises(shmipc.OwnerDied):
        with m:
            pass
    m.mark_consistent()
    m.release()
    with m:  # repaired: a plain lock now
        pass


def test_semaphore(name, child):
    s = shmipc.Semaphore(name, 1, 2)
    assert s.created and s.value == 1 and s.maximum == 2
    assert s.acquire(timeout=0)
    with pytest.raises(TimeoutError):
        s.acquire(timeout=0.05)
    s.release()
    s.release()
    with pytest.raises(ValueError, match="maximum"):
        s.release()
    with s:
        assert s.value == 1
    c = child(
        """
        import sys, shmipc
        s = shmipc.Semaphore.open(sys.argv[1])
        s.acquire(timeout=30); s.acquire(timeout=30)
        print("took two", flush=True)
        """,
        name,
    )
    c.expect("took two")
    assert c.wait()[0] == 0
    assert s.value == 0


def test_event_across_processes(name, child):
    e = shmipc.Event(name)
    assert e.created and e.manual_reset and not e.is_set()
    with pytest.raises(TimeoutError):
        e.wait(timeout=0.05)
    c = child(
        """
        import sys, shmipc
        e = shmipc.Event.open(sys.argv[1])
        e.wait(timeout=30)
        print("woken", flush=True)
        """,
        name,
    )
    e.set()
    c.expect("woken")
    assert e.is_set()
    e.reset()
    assert not e.is_set()
    assert c.wait()[0] == 0


def test_wait_releases_the_gil(name):
    e = shmipc.Event(name)
    started = threading.Event()
    result = []

    def waiter():
        started.set()
        try:
            result.append(e.wait(timeout=60))
        except TimeoutError:
            result.append("timed out")

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(30)
    # Python code runs in this thread while the other waits in Rust; if the wait
    # held the GIL, this thread would only get here after the 60 s timeout.
    busy = sum(i * i for i in range(200_000))
    assert busy > 0
    e.set()
    t.join(60)
    assert result == [True]


def test_bad_timeouts(name):
    m = shmipc.Mutex(name)
    with pytest.raises(ValueError, match="timeout"):
        m.acquire(timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        m.acquire(timeout=float("nan"))
    assert not m.held()


def test_ctrl_c_interrupts_a_wait(name, child):
    c = child(
        """
        import sys, shmipc
        e = shmipc.Event(sys.argv[1])
        try:
            print("waiting", flush=True)  # inside the try: SIGINT may come at once
            e.wait()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """,
        name,
    )
    c.expect("waiting")
    stat = f"/proc/{c.proc.pid}/stat"
    if os.path.exists(stat):
        # Interrupt it asleep inside the wait, not on its way there.
        wait_until(lambda: open(stat).read().rsplit(")", 1)[1].split()[0] == "S",
                   what="the child to sleep in its wait")
    c.proc.send_signal(signal.SIGINT)
    c.expect("interrupted")
    assert c.wait()[0] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_hold_or_release_the_parents_lock(name):
    # A child forked while the parent holds the mutex inherits the Python object
    # (and its record of the lock) but not the lock: it must not think it holds
    # it, and its release() must not unlock the parent's critical section.
    import threading

    m = shmipc.Mutex(name)
    m.acquire(timeout=5)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running finalizers
        try:
            out = [str(m.held())]
            try:
                m.release()
                out.append("released")
            except RuntimeError as e:
                out.append("RuntimeError" if "process" in str(e) else f"?{e}")
            os.write(w, " ".join(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        got = f.read()
    os.waitpid(pid, 0)
    assert got == "False RuntimeError", got
    # The parent still holds it: another thread cannot take it.
    seen = []

    def other():
        try:
            m.acquire(timeout=0.2)
            seen.append("acquired")
            m.release()
        except TimeoutError:
            seen.append("timeout")

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == ["timeout"] and m.held()
    m.release()


def test_acquiring_twice_on_one_thread_says_release(name):
    m = shmipc.Mutex(name)
    with m:
        with pytest.raises(shmipc.Error, match=r"call release\(\) first \(or leave its `with` block\)$") as e:
            m.acquire(timeout=1)
        assert "guard" not in str(e.value) and f"`{name}`" in str(e.value)


def test_a_name_that_is_not_a_usable_object_is_named(name):
    # A plain 10-byte segment is no mutex; a mutex is no event.
    seg = shmipc.Segment.create(name, 10)
    with pytest.raises(shmipc.Error, match=f"^`{name}` is not a usable shmipc mutex: the region is 10 bytes"):
        shmipc.Mutex(name)
    seg.close()
    m = shmipc.Mutex(name + "-m")
    with pytest.raises(shmipc.Error, match=f"^`{name}-m` is not a usable shmipc event: .*use the name of an event,"):
        shmipc.Event(name + "-m")
    del m
