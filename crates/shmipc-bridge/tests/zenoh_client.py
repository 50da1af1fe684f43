"""A zenoh client of zenoh's own Python package (eclipse-zenoh), as a user on another
host would run it: receives COUNT samples of KEY (printing each payload on a line),
then puts PUTS samples "py-1".."py-PUTS" to PUT_KEY. Exits 3 if it takes too long."""
import argparse
import json
import os
import sys
import threading

import zenoh

ap = argparse.ArgumentParser()
ap.add_argument("--connect", required=True)
ap.add_argument("--sub", required=True)
ap.add_argument("--count", type=int, required=True)
ap.add_argument("--put", required=True)
ap.add_argument("--puts", type=int, required=True)
ap.add_argument("--garbage", action="store_true",
                help="first put malformed packed puts to PUT_KEY's bridges' form")
ap.add_argument("--deadline", type=float, default=120.0)
a = ap.parse_args()

timer = threading.Timer(a.deadline, lambda: os._exit(3))
timer.daemon = True
timer.start()

conf = zenoh.Config()
conf.insert_json5("mode", '"peer"')
conf.insert_json5("connect/endpoints", json.dumps([a.connect]))
conf.insert_json5("scouting/multicast/enabled", "false")
session = zenoh.open(conf)
sub = session.declare_subscriber(a.sub)
print(f"subscribed to {a.sub}", file=sys.stderr, flush=True)
tagged = 0
for _ in range(a.count):
    sample = sub.recv()
    if sample.attachment is not None and len(sample.attachment.to_bytes()) == 28:
        tagged += 1
    print(sample.payload.to_bytes().decode(), flush=True)
print(f"received {a.count}, {tagged} with a bridge attachment", file=sys.stderr, flush=True)
if a.garbage:
    # What a hostile or broken peer could put on the key bridges read packed: a
    # record cut short, a length past the end, and no bridge attachment at all.
    packed = a.put + "/@shmipc"
    forged = b"SHP1" + bytes(range(16))
    record = (1).to_bytes(8, "little") + (5).to_bytes(4, "little") + b"abc"
    session.put(packed, record, attachment=forged)
    huge = (2).to_bytes(8, "little") + (0xFFFFFFFF).to_bytes(4, "little")
    session.put(packed, huge, attachment=forged)
    session.put(packed, b"no attachment")
    print(f"put 3 malformed to {packed}", file=sys.stderr, flush=True)
pub = session.declare_publisher(a.put)
for i in range(1, a.puts + 1):
    pub.put(f"py-{i}".encode())
print(f"put {a.puts} to {a.put}", file=sys.stderr, flush=True)
session.close()
