"""What each call of the Python binding costs against the same call from C,
measured in one run: 64-byte messages, one process, a ring big enough that
nothing waits, so the figures are the calls' own cost.

    python3 bench/python_bench.py [--messages N] [--c-bench PATH] [--md FILE]

Needs the dmaq package importable and dmaq-call-bench (bench/call_overhead.c)
built. Where cffi is importable, also times one call through cffi's ABI
mode, to show what it would save. Prints a Markdown section.
"""
import argparse
import os
import subprocess
import sys
import time

import dmaq

ROUND = 1000
SIZE = 64


def timed_rounds(n, publish, consume):
    """Messages/s of `publish` and `consume`, each run ROUND times a round."""
    t_pub = t_con = 0.0
    for _ in range(n // ROUND):
        t0 = time.perf_counter()
        publish()
        t1 = time.perf_counter()
        consume()
        t2 = time.perf_counter()
        t_pub += t1 - t0
        t_con += t2 - t1
    done = n // ROUND * ROUND
    return done / t_pub, done / t_con


def measure_python(n):
    uri = f"shm://py-bench-{os.getpid()}"
    msg = bytes(SIZE)
    batch = [msg] * ROUND
    buf = bytearray(SIZE)
    results = {}
    with dmaq.Publisher(uri, capacity=1 << 20) as pub, dmaq.Subscriber(uri) as sub:
        send, recv, recv_into = pub.send, sub.recv, sub.recv_into

        def sends():
            for _ in range(ROUND):
                send(msg)

        def recvs():
            for _ in range(ROUND):
                recv()

        def recv_intos():
            for _ in range(ROUND):
                recv_into(buf)

        def reserves():
            for _ in range(ROUND):
                with pub.reserve(SIZE) as view:
                    view[:] = msg

        def peeks():
            for _ in range(ROUND):
                with sub.peek() as view:
                    view[0]

        def peek_manys():
            got = 0
            while got < ROUND:
                with sub.peek_many() as views:
                    for view in views:
                        view[0]
                    got += len(views)

        def send_many():
            pub.send_many(batch)

        def recv_many():
            got = 0
            while got < ROUND:
                got += len(sub.recv_many(ROUND))

        results["send"], results["recv"] = timed_rounds(n, sends, recvs)
        _, results["recv_into"] = timed_rounds(n, sends, recv_intos)
        results["reserve+commit"], results["peek+release"] = timed_rounds(n, reserves, peeks)
        results["send_many"], results["recv_many"] = timed_rounds(n * 10, send_many, recv_many)
        _, results["peek_many"] = timed_rounds(n * 10, send_many, peek_manys)
    dmaq.unlink(uri)
    return results


def measure_cffi_call(n):
    """One dmaq_pub_send per message through cffi's ABI mode, if installed."""
    try:
        import cffi
    except ImportError:
        return None
    ffi = cffi.FFI()
    ffi.cdef("int dmaq_pub_open(const char *, void *, void **); int dmaq_pub_close(void *);"
             "int dmaq_pub_send(void *, const void *, size_t, int64_t); int dmaq_channel_unlink(const char *);")
    from dmaq import _native
    lib = ffi.dlopen(_native.lib._name)
    uri = f"shm://py-bench-cffi-{os.getpid()}".encode()
    handle = ffi.new("void **")
    if lib.dmaq_pub_open(uri, ffi.NULL, handle) < 0:
        return None
    pub, msg, send = handle[0], bytes(SIZE), lib.dmaq_pub_send
    total = 0.0
    for _ in range(n // ROUND):  # overwrite nothing: nobody subscribes, so sends never wait
        t0 = time.perf_counter()
        for _ in range(ROUND):
            send(pub, msg, SIZE, -1)
        total += time.perf_counter() - t0
    lib.dmaq_pub_close(pub)
    lib.dmaq_channel_unlink(uri)
    return n // ROUND * ROUND / total


def measure_c(path, n):
    out = subprocess.run([path, str(n)], check=True, capture_output=True, text=True).stdout
    return {name: float(rate) for name, rate in (line.rsplit(" ", 1) for line in out.splitlines())}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200000)
    ap.add_argument("--c-bench", default=os.path.join(here, "..", "build", "bench", "dmaq-call-bench"))
    ap.add_argument("--md", help="append the section to this file instead of printing it")
    args = ap.parse_args()
    c = measure_c(args.c_bench, args.messages * 5)
    py = measure_python(args.messages)
    cffi_rate = measure_cffi_call(args.messages)
    rows = [("send", "send"), ("recv", "recv"), ("recv_into", "recv"), ("reserve+commit", "reserve+commit"),
            ("peek+release", "peek+release"), ("peek_many + release (batches of 256)", "peek+release"),
            ("send_many (batches of 1000)", "send"), ("recv_many (batches of 1000)", "recv")]
    keys = {"send_many (batches of 1000)": "send_many", "recv_many (batches of 1000)": "recv_many",
            "peek_many + release (batches of 256)": "peek_many"}
    lines = [f"\n## Python binding: per-call cost against C ({sys.implementation.name} "
             f"{sys.version.split()[0]}, dmaq {dmaq.__version__})\n",
             "64-byte messages, one process, a ring nothing waits on, so the figures are the calls' own cost.",
             "Command: `python3 bench/python_bench.py` (after `bench/run.sh` has built the C baseline).\n",
             "| Python call | Python msg/s | C msg/s (the same C call) | Python / C |", "|---|---|---|---|"]
    for label, c_key in rows:
        rate = py[keys.get(label, label)]
        lines.append(f"| {label} | {rate / 1e6:.2f} M | {c[c_key] / 1e6:.2f} M | {rate / c[c_key]:.3f}x |")
    if cffi_rate:
        lines.append(f"\nThe same `dmaq_pub_send` per message through cffi's ABI mode: {cffi_rate / 1e6:.2f} M "
                     f"msg/s ({cffi_rate / py['send']:.2f}x the binding's `send`).")
    lines.append(f"\nTarget: 1 M msg/s through the zero-copy path. Measured: reading in place with peek_many, "
                 f"{py['peek_many'] / 1e6:.2f} M msg/s ({'met' if py['peek_many'] >= 1e6 else 'missed'}); one lease "
                 f"per call: reserve+commit {py['reserve+commit'] / 1e6:.2f} M, peek+release "
                 f"{py['peek+release'] / 1e6:.2f} M msg/s.")
    text = "\n".join(lines) + "\n"
    if args.md:
        with open(args.md, "a") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
