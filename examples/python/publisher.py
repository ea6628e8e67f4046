"""The smallest dmaq publisher in Python: waits for N subscribers (Python or
C ones: examples/c/subscriber.c reads the same channel), sends messages,
then "bye".

    python3 examples/python/publisher.py [URI] [MESSAGES] [SUBSCRIBERS]
"""
import sys
import time

import dmaq

uri = sys.argv[1] if len(sys.argv) > 1 else "shm://demo"
messages = int(sys.argv[2]) if len(sys.argv) > 2 else 10
want = int(sys.argv[3]) if len(sys.argv) > 3 else 2

with dmaq.Publisher(uri, kind=dmaq.BROADCAST, policy=dmaq.BLOCK, capacity=1 << 16) as pub:
    while dmaq.stat(uri).subscribers < want:  # a broadcast reaches those attached when it is sent
        time.sleep(0.01)
    print(f"publisher {pub.id}: {want} subscribers attached, sending {messages} messages", flush=True)
    for i in range(messages):
        text = f"message {i} from Python".encode()
        with pub.reserve(len(text)) as buf:  # written in place, committed at the end of the block
            buf[:] = text
    pub.send(b"bye")
