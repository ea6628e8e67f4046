"""A Python publisher or subscriber process for the cross-language tests,
the twin of tests/peer.c (same arguments, messages and summary line):

    peer.py pub URI COUNT PUBINDEX
    peer.py sub URI EXPECT OUTFILE

The publisher mixes send, reserve/commit and send_many; the subscriber mixes
recv, peek and recv_many, so every path meets the other language's."""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dmaq  # noqa: E402
from payload import check, make  # noqa: E402

STOP = b"DMAQSTOP"
TIMEOUT = 30.0


def publisher(uri, count, key):
    rng = random.Random(key)
    with dmaq.Publisher(uri, create=False) as pub:
        longest = dmaq.stat(uri).max_message
        for first in range(0, count, 16):
            msgs = [make(key, i, longest if rng.random() < 0.02 else 16 + rng.randrange(min(200, longest - 16) + 1),
                         rng) for i in range(first, min(first + 16, count))]
            way = rng.randrange(3)
            if way == 0:
                for m in msgs:
                    pub.send(m, timeout=TIMEOUT)
            elif way == 1:
                for m in msgs:
                    with pub.reserve(len(m), timeout=TIMEOUT) as buf:
                        buf[:] = m
            else:
                pub.send_many(msgs, timeout=TIMEOUT)


def subscriber(uri, expect, out):
    received = lost = bad = order = 0
    last = {}
    rng = random.Random(os.getpid())
    with dmaq.Subscriber(uri, create=False) as sub:
        queue = dmaq.stat(uri).kind == dmaq.QUEUE
        stopped = False
        while not stopped and (queue or received + lost < expect):
            # recv_many could take another queue subscriber's STOP
            way = rng.randrange(2 if queue else 3)
            try:
                if way == 0:
                    msgs = [sub.recv(timeout=TIMEOUT)]
                elif way == 1:
                    with sub.peek(timeout=TIMEOUT) as view:
                        msgs = [bytes(view)]
                else:
                    msgs = sub.recv_many(16, timeout=TIMEOUT)
            except dmaq.MessagesLost as e:
                lost += e.lost
                msgs = e.messages
            except dmaq.Overwritten:  # what the peek read may be torn: it counts as lost
                lost += 1
                continue
            for m in msgs:
                if queue and m == STOP:
                    stopped = True
                    break
                received += 1
                try:
                    ident = check(m)
                except ValueError as e:
                    print(f"peer.py sub: {e}", file=sys.stderr)
                    bad += 1
                    continue
                if ident:
                    if ident[1] <= last.get(ident[0], -1):
                        order += 1
                    last[ident[0]] = ident[1]
    with open(out, "w") as f:
        f.write(f"received={received} lost={lost} bad={bad} order={order}\n")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "pub":
        publisher(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "sub":
        subscriber(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit("usage: peer.py pub URI COUNT PUBINDEX | sub URI EXPECT OUTFILE")
