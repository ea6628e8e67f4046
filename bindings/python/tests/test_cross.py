"""Python and C peers on one channel, in separate processes, on every kind:
a Python publisher with C subscribers and a C publisher with Python
subscribers, every message checksummed and checked on arrival; over shm://
and again over tcp:// (this process binding the channel, the peers
connecting); and over rdma:// the same way, inside the Soft-RoCE VM
(tests/rdma-guest.sh), where $RDMA_VM_IP is an RDMA device's address.
With $DMAQ_DOTNET_PEER naming the .NET peer (Dmaq.Peer.dll), a .NET
publisher with C subscribers and a C publisher with .NET subscribers join
each scheme's cases: the VM runs them so that .NET programs are shown on
rdma:// too (the .NET suite covers shm:// and tcp:// itself)."""
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import dmaq

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
C_PEER = os.environ.get("DMAQ_TEST_PEER") or os.path.join(REPO, "build", "tests", "dmaq-test-peer")
PY_PEER = [sys.executable, os.path.join(HERE, "peer.py")]
DOTNET_PEER = os.environ.get("DMAQ_DOTNET_PEER")
COUNT = 3000
SUBSCRIBERS = 2


def peer(lang, *args):
    cmd = {"c": [C_PEER], "py": PY_PEER, "dotnet": ["dotnet", DOTNET_PEER]}[lang] + [str(a) for a in args]
    return subprocess.Popen(cmd)


@unittest.skipUnless(os.path.exists(C_PEER) or "DMAQ_TEST_PEER" in os.environ,
                     f"the C peer is not built ({C_PEER}); set DMAQ_TEST_PEER")
class CrossLanguage(unittest.TestCase):
    serial = 0

    def run_case(self, kind, policy, pub_lang, sub_lang, scheme):
        CrossLanguage.serial += 1
        # A small ring makes the blocking kinds wait and wrap; an overwriting
        # one holds the whole stream, since a C publisher can lap a Python
        # subscriber before it reads anything at all.
        capacity = 1 << 20 if policy == dmaq.OVERWRITE else 1 << 16
        host = None
        if scheme != "shm":
            # This process hosts the channel (binds); both peers connect.
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            host_ip = os.environ["RDMA_VM_IP"] if scheme == "rdma" else "127.0.0.1"
            uri = f"{scheme}://{host_ip}:{port}/pytest-cross-{CrossLanguage.serial}"
            host = dmaq.Publisher(uri, kind=kind, policy=policy, capacity=capacity, max_message=2048, bind=True)
            self.addCleanup(host.close)
        else:
            uri = f"shm://pytest-cross-{os.getpid()}-{CrossLanguage.serial}"
            dmaq.Publisher(uri, kind=kind, policy=policy, capacity=capacity, max_message=2048).close()
            self.addCleanup(dmaq.unlink, uri)
        with tempfile.TemporaryDirectory() as tmp:
            outs = [os.path.join(tmp, f"sub{i}") for i in range(SUBSCRIBERS)]
            subs = [peer(sub_lang, "sub", uri, COUNT, out) for out in outs]
            deadline = time.monotonic() + 60  # a .NET peer starts slowly in the emulated VM
            while dmaq.stat(uri).subscribers < SUBSCRIBERS:  # broadcast subscribers see what comes after they join
                self.assertLess(time.monotonic(), deadline, "subscribers did not attach")
                time.sleep(0.01)
            pub = peer(pub_lang, "pub", uri, COUNT, 1)
            self.assertEqual(pub.wait(timeout=120), 0, f"{pub_lang} publisher failed")
            if kind == dmaq.QUEUE:
                stopper = host if host is not None else dmaq.Publisher(uri)
                for _ in subs:
                    stopper.send(b"DMAQSTOP")
                if stopper is not host:
                    stopper.close()
            for s in subs:
                self.assertEqual(s.wait(timeout=120), 0, f"{sub_lang} subscriber failed")
            results = []
            for out in outs:
                with open(out) as f:
                    results.append(dict(kv.split("=") for kv in f.read().split()))
        results = [{k: int(v) for k, v in r.items()} for r in results]
        for r in results:
            self.assertEqual(r["bad"], 0, f"corrupt messages: {results}")
            self.assertEqual(r["order"], 0, f"out of order: {results}")
        if kind == dmaq.QUEUE:
            self.assertEqual(sum(r["received"] for r in results), COUNT, f"each message once: {results}")
        else:
            for r in results:
                self.assertEqual(r["received"] + r["lost"], COUNT, f"every message accounted for: {results}")
                self.assertGreater(r["received"], 0, f"messages arrived: {results}")
                if policy == dmaq.BLOCK:
                    self.assertEqual(r["lost"], 0, f"block loses nothing: {results}")


def _add_cases():
    kinds = {"queue": (dmaq.QUEUE, dmaq.BLOCK), "broadcast_block": (dmaq.BROADCAST, dmaq.BLOCK),
             "broadcast_overwrite": (dmaq.BROADCAST, dmaq.OVERWRITE)}
    # rdma:// needs an RDMA device: tests/rdma-guest.sh runs those in the VM.
    for scheme in ("shm", "tcp") + (("rdma",) if "RDMA_VM_IP" in os.environ else ()):
        for name, (kind, policy) in kinds.items():
            for pub_lang, sub_lang in (("py", "c"), ("c", "py")) + ((("dotnet", "c"), ("c", "dotnet")) if DOTNET_PEER else ()):
                def case(self, kind=kind, policy=policy, pub_lang=pub_lang, sub_lang=sub_lang, scheme=scheme):
                    self.run_case(kind, policy, pub_lang, sub_lang, scheme)
                prefix = "" if scheme == "shm" else f"{scheme}_"
                setattr(CrossLanguage, f"test_{prefix}{name}_{pub_lang}_publisher_{sub_lang}_subscribers", case)


_add_cases()

if __name__ == "__main__":
    unittest.main()
