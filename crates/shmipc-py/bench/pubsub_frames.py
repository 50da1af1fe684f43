"""Python pub/sub of 1 MiB NumPy frames between two processes: shmipc pubsub with
loans (zero copy both ways: the writer fills a loaned chunk, the reader reads the
sample in place), shmipc pubsub with send() (the frame copied in, read in place),
shmipc spsc (loaned slots, zero copy), multiprocessing.Queue, and shared_memory
blocks + a Queue of block numbers.

Every contender does the same work: the writer fills every byte of each frame, the
reader reads every byte (sums it). They run interleaved (A B C A B C ...) for
several rounds in one run; the report is each one's median samples/s and the ratios.

    python crates/shmipc-py/bench/pubsub_frames.py [--frames 2000] [--rounds 5]

Each contender creates its channel afresh per round, so a round also pays the
first touch (page faults) of the memory it cycles through: a few hundred frames
measure mostly that; the default 2000 amortise it.
"""

import argparse
import multiprocessing as mp
import os
import statistics
import time

import numpy as np

FRAME = 1 << 20


def shmipc_reader(topic, frames, ready, done):
    import shmipc

    sub = shmipc.Subscriber.open(topic)
    ready.set()
    total = 0
    for _ in range(frames):
        with sub.recv(timeout=60) as s:
            a = np.frombuffer(s, dtype=np.uint64)
            total += int(a.sum())
            del a  # before the with block hands the sample back
    done.put(total)


def run_shmipc_send(frames, ctx):
    return run_shmipc(frames, ctx, loans=False)


def run_shmipc(frames, ctx, loans=True):
    import shmipc

    topic = f"bench-py-{os.getpid()}-{time.monotonic_ns()}"
    pub = shmipc.Publisher(topic, capacity=8, slot_size=FRAME, overflow="block")
    ready, done = ctx.Event(), ctx.Queue()
    p = ctx.Process(target=shmipc_reader, args=(topic, frames, ready, done))
    p.start()
    ready.wait(60)
    frame = np.empty(FRAME // 8, dtype=np.uint64)
    t0 = time.perf_counter()
    for i in range(frames):
        if loans:
            with pub.loan(FRAME, timeout=60) as loan:
                np.frombuffer(loan, dtype=np.uint64).fill(i)
        else:
            frame.fill(i)
            pub.send(frame, timeout=60)
    done.get(timeout=120)
    dt = time.perf_counter() - t0
    p.join(60)
    pub.close()
    return frames / dt


def spsc_reader(name, frames, done):
    import shmipc

    rx = shmipc.Consumer.open(name)
    total = 0
    for _ in range(frames):
        s = rx.recv(timeout=60)
        total += int(np.frombuffer(s, dtype=np.uint64).sum())
    s = None
    done.put(total)


def run_spsc(frames, ctx):
    import shmipc

    name = f"bench-py-spsc-{os.getpid()}-{time.monotonic_ns()}"
    tx = shmipc.Producer(name, capacity=8, slot_size=FRAME)
    done = ctx.Queue()
    p = ctx.Process(target=spsc_reader, args=(name, frames, done))
    p.start()
    t0 = time.perf_counter()
    for i in range(frames):
        with tx.loan(FRAME, timeout=60) as loan:
            np.frombuffer(loan, dtype=np.uint64).fill(i)
    done.get(timeout=120)
    dt = time.perf_counter() - t0
    p.join(60)
    tx.close()
    return frames / dt


def queue_reader(q, frames, done):
    total = 0
    for _ in range(frames):
        a = q.get(timeout=60)
        total += int(a.sum())
    done.put(total)


def run_queue(frames, ctx):
    q, done = ctx.Queue(maxsize=8), ctx.Queue()
    p = ctx.Process(target=queue_reader, args=(q, frames, done))
    p.start()
    frame = np.empty(FRAME // 8, dtype=np.uint64)
    t0 = time.perf_counter()
    for i in range(frames):
        frame.fill(i)
        q.put(frame)
    done.get(timeout=120)
    dt = time.perf_counter() - t0
    p.join(60)
    return frames / dt


def shm_reader(names, q, back, frames, done):
    from multiprocessing import shared_memory

    # Spawned children share the parent's resource tracker: attaching registers
    # the blocks again, harmlessly; the parent unlinks them.
    blocks = [shared_memory.SharedMemory(name=n) for n in names]
    total = 0
    for _ in range(frames):
        k = q.get(timeout=60)
        total += int(np.ndarray((FRAME // 8,), dtype=np.uint64, buffer=blocks[k].buf).sum())
        back.put(k)
    done.put(total)
    for b in blocks:
        b.close()


def run_shm_queue(frames, ctx):
    from multiprocessing import shared_memory

    blocks = [shared_memory.SharedMemory(create=True, size=FRAME) for _ in range(8)]
    q, back, done = ctx.Queue(), ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=shm_reader, args=([b.name for b in blocks], q, back, frames, done))
    p.start()
    free = list(range(len(blocks)))
    t0 = time.perf_counter()
    for i in range(frames):
        k = free.pop() if free else back.get(timeout=60)
        np.ndarray((FRAME // 8,), dtype=np.uint64, buffer=blocks[k].buf).fill(i)
        q.put(k)
    done.get(timeout=120)
    dt = time.perf_counter() - t0
    p.join(60)
    for b in blocks:
        b.close()
        b.unlink()
    return frames / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    runs = {
        "shmipc pubsub (loans)": run_shmipc,
        "shmipc pubsub (send)": run_shmipc_send,
        "shmipc spsc (loans)": run_spsc, "mp.Queue": run_queue, "shared_memory+Queue": run_shm_queue,
    }
    results = {k: [] for k in runs}
    for _ in range(args.rounds):
        for k, f in runs.items():
            results[k].append(f(args.frames, ctx))
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in med.items():
        print(f"{k:22s} {v:10.0f} samples/s (1 MiB)   rounds: {', '.join(f'{x:.0f}' for x in results[k])}")
    for k in ("shmipc pubsub (loans)", "shmipc pubsub (send)"):
        print(f"{k} / mp.Queue            {med[k] / med['mp.Queue']:.1f}x")
        print(f"{k} / shared_memory+Queue {med[k] / med['shared_memory+Queue']:.1f}x")
    print(f"shmipc spsc / mp.Queue       {med['shmipc spsc (loans)'] / med['mp.Queue']:.1f}x")


if __name__ == "__main__":
    main()
