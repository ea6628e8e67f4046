"""The smallest dmaq subscriber in Python: prints every message until "bye".

    python3 examples/python/subscriber.py [URI] [NAME]
"""
import sys

import dmaq

uri = sys.argv[1] if len(sys.argv) > 1 else "shm://demo"
name = sys.argv[2] if len(sys.argv) > 2 else "subscriber"

with dmaq.Subscriber(uri, kind=dmaq.BROADCAST, policy=dmaq.BLOCK, capacity=1 << 16) as sub:
    count = 0
    while True:
        lease = sub.peek(timeout=10)  # zero-copy: a read-only view into the ring
        with lease as view:
            if view == b"bye":
                break
            count += 1
            print(f"{name}: got    seq={lease.seq} from publisher {lease.publisher_id}: '{bytes(view).decode()}'",
                  flush=True)
    print(f"{name}: done, {count} messages", flush=True)
