"""Shared helpers: unique names, the built `shmipc` CLI, child Python processes,
and waiting on a condition with a deadline (never a bare sleep)."""

import itertools
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
_counter = itertools.count()


@pytest.fixture
def name(request):
    """A segment/object name no other test (or test run) uses; removed afterwards
    if a test left it persistent."""
    n = f"pyt-{os.getpid()}-{next(_counter)}"
    yield n
    import shmipc

    try:
        shmipc.Segment.remove(n)
    except (FileNotFoundError, shmipc.Error, OSError):
        pass


@pytest.fixture(scope="session")
def shmipc_bin():
    """The `shmipc` CLI: $SHMIPC_BIN, or the workspace's debug build (built here if
    missing)."""
    env = os.environ.get("SHMIPC_BIN")
    if env:
        return env
    exe = REPO / "target" / "debug" / ("shmipc.exe" if os.name == "nt" else "shmipc")
    if not exe.exists():
        subprocess.run(
            ["cargo", "build", "-q", "-p", "shmipc-cli"], cwd=REPO, check=True, timeout=1200
        )
    assert exe.exists(), f"the shmipc CLI was not built at {exe}"
    return str(exe)


def run_cli(shmipc_bin, *args, timeout=60, check=True, **kw):
    r = subprocess.run(
        [shmipc_bin, *args], capture_output=True, timeout=timeout, text=True, **kw
    )
    if check and r.returncode != 0:
        raise AssertionError(f"shmipc {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


class Child:
    """A Python child process running `code`, talking by lines on stdout."""

    def __init__(self, code, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def expect(self, line, timeout=30):
        """Waits (with a deadline) for the child to print `line`."""
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                raise AssertionError(f"child did not print {line!r} in {timeout} s")
            if sel.select(left):
                got = self.proc.stdout.readline()
                if not got:
                    err = self.proc.stderr.read()
                    raise AssertionError(f"child exited before printing {line!r}: {err}")
                if got.rstrip("\n") == line:
                    return

    def wait(self, timeout=30):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode, out, err

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def child():
    made = []

    def make(code, *args):
        c = Child(code, *args)
        made.append(c)
        return c

    yield make
    for c in made:
        if c.proc.poll() is None:
            c.kill()
        for f in (c.proc.stdin, c.proc.stdout, c.proc.stderr):
            if f is not None and not f.closed:
                f.close()


def wait_until(cond, timeout=30, what="condition"):
    """Polls `cond` until true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="session")
def spsc_peer():
    """The Rust spsc peer (examples/spsc_peer.rs): $SHMIPC_SPSC_PEER, or the
    workspace's debug build (built here if missing)."""
    env = os.environ.get("SHMIPC_SPSC_PEER")
    if env:
        return env
    exe = REPO / "target" / "debug" / "examples" / ("spsc_peer.exe" if os.name == "nt" else "spsc_peer")
    if not exe.exists():
        subprocess.run(
            ["cargo", "build", "-q", "-p", "shmipc-py", "--example", "spsc_peer"],
            cwd=REPO,
            check=True,
            timeout=1200,
        )
    assert exe.exists(), f"the Rust spsc peer was not built at {exe}"
    return str(exe)
