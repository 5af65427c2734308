#!/usr/bin/env python3
"""Split a py-spy raw profile of an h2serve worker into where the time goes.

    py-spy record --gil -r 500 -d 6 -f raw -o worker.raw -p WORKER_PID
    python scripts/gil_profile_split.py worker.raw

Each sample is put in one group by the thread's role (the poller reading a
connection, a pool thread serving a request, or anything else) and by the
innermost frame: a file of the h2, hpack or hyperframe libraries, or ours.
docs/performance.md quotes this split for the h2-hello-1conn load.
"""

from __future__ import annotations

import collections
import re
import sys

LIBRARIES = ("h2/", "hpack/", "hyperframe/")
SENDING = ("send_complete", "send_response", "send_body", "send_whole_response",
           "_frame_handoffs", "_finish")
FRAME_FILE = re.compile(r"\((.*):\d+\)$")


def frame_file(frame: str) -> str:
    match = FRAME_FILE.search(frame)
    return match.group(1) if match else ""


def group(frames: list[str]) -> str:
    """The group of one sample, from its stack (outermost frame first)."""
    leaf = frame_file(frames[-1])
    in_library = leaf.startswith(LIBRARIES) or any("/" + name in leaf for name in LIBRARIES)
    ours = "protocol/" in leaf or "connection/" in leaf
    if any("on_readable" in frame for frame in frames):
        if in_library:
            return "receive: h2, hpack, hyperframe"
        if "protocol/" in leaf:
            return "receive: our protocol"
        return "receive: driver, TLS reads, new streams"
    # Responses are framed by the app's thread, or by the poller once handed over.
    sending = any(name in frame for frame in frames for name in SENDING)
    if sending and in_library:
        return "send: h2, hpack, hyperframe"
    if sending and ours:
        return "send: our protocol and driver"
    if any("serve_request" in frame for frame in frames):
        return "WSGI adapter and app"
    return "poller loop, method queue, pool hand-off, writes"


def main(path: str) -> None:
    counts: collections.Counter[str] = collections.Counter()
    for line in open(path, encoding="utf-8"):
        stack, _, samples = line.rstrip().rpartition(" ")
        if stack:
            counts[group(stack.split(";"))] += int(samples)
    total = sum(counts.values())
    for name, samples in counts.most_common():
        print(f"{100 * samples / total:5.1f} %  {name}")
    print(f"{total} samples")


if __name__ == "__main__":
    main(sys.argv[1])
