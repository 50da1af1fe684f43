"""Segments and views: lifetime, the buffer protocol, errors, interop."""

import os
import signal

import numpy as np
import pytest

import shmipc
from conftest import run_cli

LINUX = os.path.exists("/dev/shm")


def test_create_open_create_or_open(name):
    with shmipc.Segment.create(name, 4096) as seg:
        assert seg.created and seg.size == 4096 and seg.name == name
        assert seg.access == "rw" and not seg.persistent and seg.file is None
        other = shmipc.Segment.create_or_open(name, 4096)
        assert not other.created
        third = shmipc.Segment(name, 4096)  # the constructor creates or opens
        assert not third.created
        with pytest.raises(FileExistsError, match=name):
            shmipc.Segment.create(name, 4096)
        other.close()
        third.close()
    # The last holder closed it: gone (Win32 semantics).
    with pytest.raises(FileNotFoundError, match=name):
        shmipc.Segment.open(name)
    fresh = shmipc.Segment(name, 100)
    assert fresh.created
    fresh.close()


def test_read_write_and_views_share_memory(name):
    seg = shmipc.Segment.create(name, 8192)
    seg.write(10, b"hello")
    assert seg.read(10, 5) == b"hello"
    v = seg.map(4096, 100)
    assert len(v) == 100 and v.offset == 4096 and not v.readonly
    mv = memoryview(v)
    mv[0:3] = b"abc"
    assert seg.read(4096, 3) == b"abc"
    assert v.read(0, 3) == b"abc"
    v.write(3, bytearray(b"def"))
    assert bytes(mv[:6]) == b"abcdef"
    mv.release()
    v.close()
    assert v.closed
    with pytest.raises(ValueError, match="closed"):
        memoryview(v)
    seg.close()


def test_numpy_zero_copy_and_close_refused_while_exported(name):
    seg = shmipc.Segment.create(name, 4096)
    v = seg.map()
    a = np.frombuffer(v, dtype=np.float64)
    assert a.size == 512
    a[:] = np.arange(512)
    b = np.frombuffer(seg.map(), dtype=np.float64)  # another mapping, same memory
    assert b[511] == 511.0
    with pytest.raises(BufferError, match="exported"):
        v.close()
    with pytest.raises(BufferError):
        with v:
            pass
    del a
    v.close()  # nothing exported any more
    seg.close()


def test_read_only_view_exports_read_only_buffers(name):
    seg = shmipc.Segment.create(name, 4096)
    seg.write(0, b"x")
    ro = shmipc.Segment.open(name, "r")
    v = ro.map()
    assert v.readonly and ro.access == "r"
    mv = memoryview(v)
    assert mv.readonly and mv[0] == ord("x")
    with pytest.raises(TypeError):
        mv[0] = 1
    arr = np.frombuffer(v, dtype=np.uint8)
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[0] = 1
    with pytest.raises(PermissionError):
        v.write(0, b"y")
    with pytest.raises(PermissionError):
        ro.map(access="rw")
    mv.release()
    del arr
    # Copy-on-write: writable, private.
    cow = shmipc.Segment.open(name, "cow").map()
    memoryview(cow)[0] = ord("z")
    assert seg.read(0, 1) == b"x"


def test_file_backing_and_persistence(name, tmp_path):
    f = tmp_path / "data.bin"
    seg = shmipc.Segment.create(name, 4096, file=f)
    assert seg.file == f
    seg.write(0, b"kept in the file")
    seg.map().flush()
    assert seg.persistent  # a file-backed name lasts until removed
    seg.close()
    assert shmipc.Segment.open(name).read(0, 16) == b"kept in the file"
    shmipc.Segment.remove(name)
    assert f.read_bytes()[:16] == b"kept in the file"

    p = shmipc.Segment.create(name, 100, persistent=True)
    assert p.persistent
    p.write(0, b"still here")
    p.close()
    again = shmipc.Segment.open(name)
    assert again.read(0, 10) == b"still here"
    again.close()
    shmipc.Segment.remove(name)
    with pytest.raises(FileNotFoundError):
        shmipc.Segment.open(name)


def test_bad_arguments_raise_clear_exceptions(name):
    with pytest.raises(ValueError, match="name"):
        shmipc.Segment.create("a/b", 10)
    with pytest.raises(ValueError):
        shmipc.Segment.create(name, 0)
    with pytest.raises(ValueError, match="size must be a whole number from 0 to"):
        shmipc.Segment.create(name, -1)
    with pytest.raises(ValueError, match="access"):
        shmipc.Segment.open(name, "x")
    with pytest.raises(FileNotFoundError, match=name):
        shmipc.Segment.open(name)
    seg = shmipc.Segment.create(name, 4096)
    with pytest.raises(ValueError, match="outside"):
        seg.map(4000, 200)
    with pytest.raises(ValueError, match="outside"):
        seg.map().read(4090, 10)
    with pytest.raises(TypeError):
        seg.write(0, "text is not bytes")
    seg.close()
    with pytest.raises(ValueError, match="closed"):
        seg.read(0, 1)


# Every whole-number argument, given a negative number, one too large for any OS,
# or a non-integer: a ValueError / TypeError naming the argument (not Python's bare
# OverflowError), and nothing is created.
INT_ARGS = [
    ("size", lambda n, v: shmipc.Segment.create(n, v)),
    ("mode", lambda n, v: shmipc.Segment.create(n, 64, mode=v)),
    ("offset", lambda n, v: shmipc.Segment.create(n, 64).map(offset=v)),
    ("length", lambda n, v: shmipc.Segment.create(n, 64).map(length=v)),
    ("n", lambda n, v: shmipc.Segment.create(n, 64).read(0, v)),
    ("offset", lambda n, v: shmipc.Segment.create(n, 64).map().write(v, b"x")),
    ("initial", lambda n, v: shmipc.Semaphore(n, initial=v)),
    ("maximum", lambda n, v: shmipc.Semaphore(n, maximum=v)),
    ("capacity", lambda n, v: shmipc.Producer(n, capacity=v)),
    ("slot_size", lambda n, v: shmipc.Consumer(n, slot_size=v)),
    ("capacity", lambda n, v: shmipc.Publisher(n, capacity=v)),
    ("max_subscribers", lambda n, v: shmipc.Publisher(n, max_subscribers=v)),
    ("max_held", lambda n, v: shmipc.Publisher(n, max_held=v)),
    ("history", lambda n, v: shmipc.Subscriber(n, history=v)),
    ("size", lambda n, v: shmipc.Publisher(n).loan(v)),
    ("size", lambda n, v: shmipc.Producer(n).loan(v)),
]


@pytest.mark.parametrize("arg,call", INT_ARGS)
def test_bad_whole_number_arguments_name_the_argument(name, arg, call):
    for bad in (-1, 1 << 70):
        with pytest.raises(ValueError, match=f"^{arg} must be a whole number from 0 to "):
            call(name, bad)
    with pytest.raises(TypeError, match=f"^argument '{arg}': expected a whole number"):
        call(name, 1.5)
    if LINUX:
        assert not [f for f in os.listdir("/dev/shm") if name in f]


def test_multiprocessing_shared_memory_interop(name):
    from multiprocessing import resource_tracker, shared_memory

    # Python's SharedMemory makes it, shmipc opens it by the same name.
    shm = shared_memory.SharedMemory(name=name, create=True, size=4096)
    try:
        shm.buf[:5] = b"from "
        seg = shmipc.Segment.open(name)
        assert seg.read(0, 5) == b"from "
        seg.write(5, b"shmipc")
        assert bytes(shm.buf[:11]) == b"from shmipc"
        seg.close()
    finally:
        shm.close()
        shm.unlink()

    # shmipc makes it, SharedMemory attaches by name.
    seg = shmipc.Segment.create(name, 4096)
    seg.write(0, b"made by shmipc")
    other = shared_memory.SharedMemory(name=name)
    # Python 3.11's resource tracker would unlink it at exit (CPython #82300).
    resource_tracker.unregister(other._name, "shared_memory")
    assert bytes(other.buf[:14]) == b"made by shmipc"
    other.close()
    seg.close()


def test_python_segment_read_by_cli_and_back(name, shmipc_bin):
    seg = shmipc.Segment.create(name, 4096)
    seg.write(0, b"Hello from Python\0")
    r = run_cli(shmipc_bin, "read", name)
    assert r.stdout.strip() == "Hello from Python"
    run_cli(shmipc_bin, "write", name, "Hello from the CLI")
    assert seg.read(0, 19) == b"Hello from the CLI\0"
    seg.close()
    # The CLI makes one (kept until `shmipc rm`), Python reads it.
    run_cli(shmipc_bin, "create", name, "--size", "4096")
    run_cli(shmipc_bin, "write", name, "made by the CLI")
    s = shmipc.Segment.open(name, "r")
    assert s.read(0, 15) == b"made by the CLI"
    s.close()
    shmipc.Segment.remove(name)


def test_numpy_array_seen_by_another_process(name, child):
    seg = shmipc.Segment.create(name, 8 * 1000)
    arr = np.frombuffer(seg.map(), dtype=np.int64)
    c = child(
        """
        import sys, numpy as np, shmipc
        seg = shmipc.Segment.open(sys.argv[1])
        a = np.frombuffer(seg.map(), dtype=np.int64)
        a[:] = np.arange(1000) * 3
        print("written", flush=True)
        """,
        name,
    )
    c.expect("written")
    assert c.wait()[0] == 0
    # Written by the child through its own array, seen here without a copy.
    assert arr[999] == 2997 and arr.sum() == 3 * 999 * 1000 // 2
    del arr
    seg.close()


@pytest.mark.skipif(not LINUX, reason="checks /dev/shm")
def test_sigkilled_python_holder_leaves_nothing(name, child):
    c = child(
        """
        import sys, shmipc
        seg = shmipc.Segment.create(sys.argv[1], 1 << 20)
        v = seg.map()
        mv = memoryview(v)
        mv[:5] = b"alive"
        print("holding", flush=True)
        sys.stdin.read()
        """,
        name,
    )
    c.expect("holding")
    assert os.path.exists(f"/dev/shm/{name}")
    assert shmipc.Segment.open(name, "r").read(0, 5) == b"alive"
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(timeout=30)
    # Its holder died: opening finds it gone and clears the name.
    with pytest.raises(FileNotFoundError):
        shmipc.Segment.open(name)
    assert not os.path.exists(f"/dev/shm/{name}")


def test_segment_outlives_creator_while_held(name, child):
    c = child(
        """
        import sys, shmipc
        seg = shmipc.Segment.create(sys.argv[1], 4096)
        seg.write(0, b"data")
        print("made", flush=True)
        sys.stdin.readline()
        """,
        name,
    )
    c.expect("made")
    held = shmipc.Segment.open(name)
    c.kill()
    # Nothing is unlinked behind the back of a process that still holds it.
    again = shmipc.Segment.open(name)
    assert again.read(0, 4) == b"data"
    again.close()
    held.close()
    with pytest.raises(FileNotFoundError):
        shmipc.Segment.open(name)


def test_large_copies_run_without_the_gil(name):
    # Above 64 KiB, read() and write() copy with the GIL released.
    seg = shmipc.Segment.create(name, 4 << 20)
    data = np.arange(1 << 19, dtype=np.uint64)  # 4 MiB
    seg.write(0, data)
    back = np.frombuffer(seg.read(0, 4 << 20), dtype=np.uint64)
    assert (back == data).all()
    v = seg.map(1 << 20)
    v.write(0, memoryview(data)[: 1 << 16])
    assert v.read(0, 8) == data[:1].tobytes()
    seg.close()


@pytest.mark.skipif(not LINUX, reason="truncates the object in /dev/shm")
def test_segment_truncated_by_another_process_never_kills_python_by_sigbus(name, child):
    # A hostile or buggy peer truncates a segment this process has mapped. Every
    # copying call must raise an OSError naming the segment (Segment.read reads
    # with pread and never maps), and touching the lost memory through a buffer
    # must end the process with one line naming the segment and status 1 (the
    # SIGBUS handler installed at import), never a raw SIGBUS.
    c = child(
        """
        import sys, shmipc
        name = sys.argv[1]
        seg = shmipc.Segment.create(name, 1 << 16)
        view, cow = seg.map(), seg.map(access="cow")
        print("mapped", flush=True)
        sys.stdin.readline()
        calls = [
            ("Segment.read", lambda: seg.read(0, 10)),
            ("Segment.read to the end", lambda: seg.read(100)),
            ("Segment.write", lambda: seg.write(100, b"x")),
            ("View.read", lambda: view.read(60000, 10)),
            ("View.write", lambda: view.write(60000, b"x")),
            ("cow View.read", lambda: cow.read(0, 10)),
            ("cow View.write", lambda: cow.write(0, b"x")),
        ]
        for what, call in calls:
            try:
                call()
                print(what, "did not raise", flush=True)
            except OSError as e:
                print(what, "OSError", name in str(e), "truncated" in str(e), flush=True)
        # The refused Segment.write did not grow the object back.
        import os
        print("size", os.stat("/dev/shm/" + name).st_size, flush=True)
        print("touching", flush=True)
        memoryview(view)[60000]
        print("read lost memory", flush=True)
        """,
        name,
    )
    c.expect("mapped")
    os.truncate(f"/dev/shm/{name}", 0)
    c.proc.stdin.write("go\n")
    c.proc.stdin.flush()
    rc, out, err = c.wait()
    assert out.splitlines() == [
        "Segment.read OSError True True",
        "Segment.read to the end OSError True True",
        "Segment.write OSError True True",
        "View.read OSError True True",
        "View.write OSError True True",
        "cow View.read OSError True True",
        "cow View.write OSError True True",
        "size 0",
        "touching",
    ], (rc, out, err)
    assert rc == 1, (rc, err)
    assert name in err and "truncated" in err, err


def test_segment_write_on_a_copy_on_write_handle_is_refused_not_lost(name):
    # Segment.write on a handle opened "cow" used to write a private copy that
    # was thrown away at once: the call succeeded and nothing was written.
    seg = shmipc.Segment.create(name, 4096)
    cow = shmipc.Segment.open(name, "cow")
    with pytest.raises(PermissionError, match=f"{name}.*copy-on-write"):
        cow.write(0, b"lost?")
    with pytest.raises(PermissionError, match=f"{name}.*read-only"):
        shmipc.Segment.open(name, "r").write(0, b"x")
    # A view of it is the private copy, and keeps what is written.
    v = cow.map()
    v.write(0, b"mine")
    assert v.read(0, 4) == b"mine" and seg.read(0, 4) == bytes(4)
    v.close()
    cow.close()
    seg.close()


@pytest.mark.skipif(not LINUX, reason="sizes the request from /dev/shm's free space")
def test_no_room_in_dev_shm_is_an_oserror_enospc_for_every_kind(name):
    # More than /dev/shm has free is refused at creation, naming the object, as
    # the OSError(ENOSPC) that Python code (and multiprocessing.shared_memory)
    # expects of a full store, not only as shmipc's own Error.
    import errno

    st = os.statvfs("/dev/shm")
    too_big = st.f_bavail * st.f_frsize + (1 << 30)
    slots = too_big // (1 << 20) + 1
    makers = [
        lambda: shmipc.Segment.create(name, too_big),
        lambda: shmipc.Segment(name, too_big),
        lambda: shmipc.Producer(name, capacity=slots, slot_size=1 << 20),
        lambda: shmipc.Consumer(name, capacity=slots, slot_size=1 << 20),
        lambda: shmipc.Publisher(name, capacity=slots, slot_size=1 << 20),
    ]
    for make in makers:
        with pytest.raises(OSError, match=f"{name}.*free space") as e:
            make()
        assert e.value.errno == errno.ENOSPC, e.value
        assert not os.path.exists(f"/dev/shm/{name}")


# Permission bits: read/write only, as the CLI takes them. Bits beyond 0o777 and
# execute bits are refused (not silently dropped), and nothing is created.
@pytest.mark.parametrize(
    "bad,says",
    [
        (0o7777777, "bits beyond 0o777"),
        (0o4777, "bits beyond 0o777"),
        (0o1600, "bits beyond 0o777"),
        (0o700, "execute bits"),
        (0o611, "execute bits"),
    ],
)
def test_mode_refuses_bits_that_are_not_read_write(name, bad, says):
    with pytest.raises(ValueError, match=f"^mode {oct(bad)} has {says}"):
        shmipc.Segment.create(name, 64, mode=bad)
    with pytest.raises(FileNotFoundError):
        shmipc.Segment.open(name)
    seg = shmipc.Segment.create(name, 64, mode=0o660)
    seg.close()


# A name that UTF-8 cannot encode (a lone surrogate, as os.fsdecode makes of a
# byte that is not UTF-8): a ValueError naming the argument, for every kind.
NAME_ARGS = [
    lambda n: shmipc.Segment.create(n, 64),
    lambda n: shmipc.Segment(n, 64),
    lambda n: shmipc.Segment.open(n),
    lambda n: shmipc.Segment.remove(n),
    lambda n: shmipc.Mutex(n),
    lambda n: shmipc.Mutex.open(n),
    lambda n: shmipc.Semaphore(n),
    lambda n: shmipc.Event(n),
    lambda n: shmipc.Producer(n),
    lambda n: shmipc.Consumer.open(n),
    lambda n: shmipc.Publisher(n),
    lambda n: shmipc.Subscriber(n),
]


@pytest.mark.parametrize("call", NAME_ARGS)
def test_a_name_utf8_cannot_encode_is_a_value_error(name, call):
    arg = "topic" if call in NAME_ARGS[-2:] else "name"
    with pytest.raises(ValueError, match=rf"^{arg} 'pyt-.*\\udcff' is not valid text"):
        call(name + "\udcff")
