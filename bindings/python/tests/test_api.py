"""Every call of the Python binding, every error it maps, and lease misuse."""
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import dmaq

try:
    import numpy
except ImportError:
    numpy = None

_serial = 0


def fresh_uri(what="api"):
    global _serial
    _serial += 1
    return f"shm://pytest-{what}-{os.getpid()}-{_serial}"


class Channel(unittest.TestCase):
    """A fresh channel per test, unlinked afterwards."""

    kind, policy, capacity, max_message = dmaq.BROADCAST, dmaq.BLOCK, 1 << 16, 1024

    def setUp(self):
        self.uri = fresh_uri()
        self.pub = dmaq.Publisher(self.uri, kind=self.kind, policy=self.policy, capacity=self.capacity,
                                  max_message=self.max_message)
        self.sub = dmaq.Subscriber(self.uri)

    def tearDown(self):
        self.pub.close()
        self.sub.close()
        try:
            dmaq.unlink(self.uri)
        except dmaq.ChannelNotFound:
            pass


class Basics(Channel):
    def test_version_matches_the_library(self):
        self.assertEqual(dmaq.__version__, dmaq.version())
        self.assertRegex(dmaq.__version__, r"^\d+\.\d+\.\d+$")

    def test_send_and_recv_every_bytes_like(self):
        for data in (b"bytes", bytearray(b"bytearray"), memoryview(b"readonly view"),
                     memoryview(bytearray(b"writable view")), b""):
            self.pub.send(data)
            self.assertEqual(self.sub.recv(timeout=1), bytes(data))

    def test_recv_into_allocates_nothing_and_says_the_length(self):
        self.pub.send(b"hello")
        buf = bytearray(16)
        self.assertEqual(self.sub.recv_into(buf, timeout=1), 5)
        self.assertEqual(buf[:5], b"hello")

    def test_recv_into_a_small_buffer_leaves_the_message(self):
        self.pub.send(b"x" * 100)
        with self.assertRaises(dmaq.MessageTooLarge) as cm:
            self.sub.recv_into(bytearray(10), timeout=1)
        self.assertEqual(cm.exception.needed, 100)
        self.assertEqual(self.sub.recv(timeout=1), b"x" * 100)
        with self.assertRaises(dmaq.InvalidArgument):
            self.sub.recv_into(b"read-only", timeout=0)

    def test_batches(self):
        msgs = [bytes([i]) * i for i in range(1, 50)]
        self.assertEqual(self.pub.send_many(msgs), len(msgs))
        self.assertEqual(self.pub.send_many(iter([b"a", b"b"])), 2)
        got = []
        while len(got) < len(msgs) + 2:
            got += self.sub.recv_many(16, timeout=1)
        self.assertEqual(got, msgs + [b"a", b"b"])
        with self.assertRaises(dmaq.Timeout):
            self.sub.recv_many(16, timeout=0.05)
        with self.assertRaises(dmaq.InvalidArgument):
            self.sub.recv_many(0)

    def test_send_many_says_how_many_went_before_a_failure(self):
        with self.assertRaises(dmaq.MessageTooLarge) as cm:
            self.pub.send_many([b"ok", b"x" * 5000, b"never"])
        self.assertEqual(cm.exception.sent, 1)
        self.assertEqual(self.sub.recv(timeout=1), b"ok")

    def test_zero_copy_write_and_read(self):
        with self.pub.reserve(5) as buf:
            self.assertFalse(buf.readonly)
            buf[:] = b"hello"
        lease = self.sub.peek(timeout=1)
        with lease as view:
            self.assertTrue(view.readonly)
            self.assertEqual(bytes(view), b"hello")
            self.assertEqual(len(lease), 5)
            self.assertEqual(lease.publisher_id, self.pub.id)
            self.assertFalse(lease.redelivered)
            self.assertGreater(lease.timestamp_ns, 0)

    def test_a_publisher_without_timestamps(self):
        with dmaq.Publisher(self.uri, timestamps=False) as plain:
            plain.send(b"plain")
            lease = self.sub.peek(timeout=1)
            with lease:
                self.assertEqual(lease.publisher_id, plain.id)
                self.assertEqual(lease.timestamp_ns, 0)
        self.pub.send(b"stamped")
        lease = self.sub.peek(timeout=1)
        with lease:
            self.assertGreater(lease.timestamp_ns, 0)

    def test_a_write_lease_commits_what_was_used(self):
        lease = self.pub.reserve(100)
        lease.view[:3] = b"abc"
        lease.commit(3)
        self.assertEqual(self.sub.recv(timeout=1), b"abc")
        with self.assertRaises(dmaq.InvalidArgument):
            self.pub.reserve(10).commit(11)

    def test_an_exception_aborts_the_reservation(self):
        with self.assertRaises(RuntimeError):
            with self.pub.reserve(10) as buf:
                buf[:4] = b"lost"
                raise RuntimeError("changed my mind")
        self.pub.send(b"next")
        self.assertEqual(self.sub.recv(timeout=1), b"next", "the aborted message was never seen")

    def test_timeouts(self):
        t0 = time.monotonic()
        with self.assertRaises(dmaq.Timeout) as cm:
            self.sub.recv(timeout=0.3)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertIsInstance(cm.exception, TimeoutError)
        self.assertEqual(cm.exception.code, -7)
        with self.assertRaises(dmaq.Timeout):
            self.sub.peek(timeout=0.01)
        self.assertIsNone(self.sub.try_recv())

    def test_a_full_ring_blocks_then_times_out(self):
        while self.pub.try_send(b"x" * 1000):
            pass
        self.assertFalse(self.pub.try_enqueue(b"x" * 1000))
        with self.assertRaises(dmaq.Timeout):
            self.pub.send(b"x" * 1000, timeout=0.2)
        with self.assertRaises(dmaq.Timeout):
            self.pub.reserve(1000, timeout=0.2)

    def test_iteration_ends_when_another_thread_closes(self):
        got = []
        t = threading.Thread(target=lambda: got.extend(self.sub))
        t.start()
        for i in range(3):
            self.pub.send(bytes([i]))
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.sub.close()
        t.join(timeout=2)
        self.assertFalse(t.is_alive(), "close() ended the iteration")
        self.assertEqual(got, [b"\0", b"\1", b"\2"])
        self.assertTrue(self.sub.closed)
        with self.assertRaises(dmaq.Closed):
            self.sub.recv(timeout=0)

    def test_stat(self):
        self.pub.send(b"abc")
        st = dmaq.stat(self.uri)
        self.assertEqual((st.kind, st.policy, st.capacity, st.max_message), (dmaq.BROADCAST, dmaq.BLOCK, 1 << 16, 1024))
        self.assertEqual((st.publishers, st.subscribers, st.published), (1, 1, 1))
        self.assertEqual(st.subscriber_stats[0].pid, os.getpid())
        self.assertTrue(st.subscriber_stats[0].alive)
        self.assertEqual(st.subscriber_stats[0].lag, 1)
        self.assertFalse(st.stale)


class Leases(Channel):
    """Views of ring memory never outlive the lease under them."""

    def test_use_after_release_is_refused(self):
        self.pub.send(b"data")
        with self.sub.peek(timeout=1) as view:
            pass
        with self.assertRaises(ValueError):
            view[0]

    def test_a_slice_alive_keeps_the_lease(self):
        self.pub.send(b"data")
        self.pub.send(b"more")
        lease = self.sub.peek(timeout=1)
        part = lease.view[1:3]
        with self.assertRaises(dmaq.LeaseInUse) as cm:
            lease.release()
        self.assertIn("still alive", str(cm.exception))
        self.assertEqual(bytes(lease.view), b"data", "the lease's own view still works")
        self.assertEqual(bytes(part), b"at", "the slice still reads the message")
        with self.assertRaises(dmaq.Busy):
            self.sub.peek(timeout=0)  # the lease is still held
        del part
        lease.release()
        self.assertEqual(self.sub.recv(timeout=1), b"more")

    def test_a_buffer_taken_from_the_view_keeps_the_lease(self):
        self.pub.send(b"data")
        lease = self.sub.peek(timeout=1)
        taken = memoryview(lease.view).cast("c")  # a cast takes a view of the view
        with self.assertRaises(dmaq.LeaseInUse):
            lease.release()
        del taken
        lease.release()

    def test_a_writable_slice_alive_keeps_the_reservation(self):
        lease = self.pub.reserve(4)
        part = lease.view[:2]
        with self.assertRaises(dmaq.LeaseInUse):
            lease.commit()
        part[:] = b"ok"
        del part
        lease.view[2:] = b"!!"
        lease.commit()
        self.assertEqual(self.sub.recv(timeout=1), b"ok!!")

    @unittest.skipIf(numpy is None, "numpy is not installed")
    def test_numpy_wraps_a_view_without_copying_and_keeps_the_lease(self):
        self.pub.send(bytes(range(8)))
        lease = self.sub.peek(timeout=1)
        arr = numpy.frombuffer(lease.view, dtype=numpy.uint8)
        self.assertEqual(arr.sum(), 28)
        with self.assertRaises(dmaq.LeaseInUse):
            lease.release()
        del arr
        lease.release()

    def test_double_release(self):
        self.pub.send(b"data")
        lease = self.sub.peek(timeout=1)
        lease.release()
        with self.assertRaises(dmaq.LeaseError):
            lease.release()
        w = self.pub.reserve(1)
        w.abort()
        with self.assertRaises(dmaq.LeaseError):
            w.commit()

    def test_two_leases_at_once(self):
        self.pub.send(b"a")
        self.pub.send(b"b")
        lease = self.sub.peek(timeout=1)
        with self.assertRaises(dmaq.Busy):
            self.sub.peek(timeout=0)
        lease.release()
        w = self.pub.reserve(1)
        with self.assertRaises(dmaq.Busy):
            self.pub.reserve(1)
        w.abort()

    def test_closing_ends_outstanding_leases(self):
        self.pub.send(b"data")
        lease = self.sub.peek(timeout=1)
        w = self.pub.reserve(8)
        self.sub.close()
        self.pub.close()
        self.assertTrue(self.sub.closed and self.pub.closed)
        with self.assertRaises(ValueError):
            lease.view[0]
        with self.assertRaises(ValueError):
            w.view[0]

    def test_closing_with_views_alive_refuses_and_stays_open(self):
        self.pub.send(b"data")
        lease = self.sub.peek(timeout=1)
        part = lease.view[:2]
        with self.assertRaises(dmaq.LeaseInUse):
            self.sub.close()
        self.assertFalse(self.sub.closed)
        self.assertEqual(bytes(part), b"da", "the memory is still mapped")
        del part
        self.sub.close()
        self.assertTrue(self.sub.closed)


class Batches(Channel):
    """peek_many: many leases per call, released together."""

    def test_a_batch_of_views(self):
        self.pub.send_many([bytes([i]) * 8 for i in range(100)])
        with self.sub.peek_many(64, timeout=1) as views:
            self.assertEqual(len(views), 64)
            self.assertEqual([bytes(v) for v in views], [bytes([i]) * 8 for i in range(64)])
            self.assertTrue(all(v.readonly for v in views))
            with self.assertRaises(dmaq.Busy):
                self.sub.peek(timeout=0)
        with self.assertRaises(ValueError):
            views[0][0]  # released with the batch
        batch = self.sub.peek_many(timeout=1)
        self.assertEqual(len(batch), 36)
        seq, stamp, publisher, redelivered = batch.info(0)
        self.assertEqual((publisher, redelivered), (self.pub.id, False))
        self.assertEqual(batch.info(1)[0], seq + 1)
        batch.release()
        with self.assertRaises(dmaq.LeaseError):
            batch.release()
        with self.assertRaises(dmaq.Timeout):
            self.sub.peek_many(timeout=0.05)
        for bad in (0, dmaq.BATCH_MAX + 1):
            with self.assertRaises(dmaq.InvalidArgument):
                self.sub.peek_many(bad)

    def test_a_slice_alive_keeps_the_batch(self):
        self.pub.send_many([b"abcd", b"efgh"])
        batch = self.sub.peek_many(timeout=1)
        part = batch.views[1][1:3]
        with self.assertRaises(dmaq.LeaseInUse):
            batch.release()
        self.assertEqual(bytes(part), b"fg", "the memory stays mapped and leased")
        del part
        batch.release()

    def test_closing_ends_the_batch(self):
        self.pub.send(b"x")
        batch = self.sub.peek_many(timeout=1)
        self.sub.close()
        self.assertTrue(self.sub.closed)
        with self.assertRaises(ValueError):
            batch.views[0][0]


class Overwrite(Channel):
    policy, capacity, max_message = dmaq.OVERWRITE, 4096, 256

    def test_a_lapped_subscriber_learns_how_many_it_lost(self):
        for i in range(200):
            self.pub.send(bytes([i]) * 64)
        with self.assertRaises(dmaq.MessagesLost) as cm:
            self.sub.recv(timeout=1)
        lost = cm.exception.lost
        self.assertGreater(lost, 0)
        self.assertEqual(cm.exception.code, -8)
        received = 0
        while self.sub.try_recv() is not None:
            received += 1
        self.assertEqual(lost + received, 200)

    def test_recv_many_keeps_the_messages_before_the_gap(self):
        for i in range(200):
            self.pub.send(bytes([i]) * 64)
        with self.assertRaises(dmaq.MessagesLost) as cm:
            self.sub.recv_many(500, timeout=1)
        self.assertEqual(cm.exception.messages, [])
        self.assertGreater(cm.exception.lost, 0)

    def test_a_batch_overwritten_while_held(self):
        self.pub.send_many([b"m" * 32] * 5)
        batch = self.sub.peek_many(timeout=1)
        self.assertEqual(len(batch), 5)
        self.pub.send_many([b"n" * 64] * 200)
        with self.assertRaises(dmaq.Overwritten) as cm:
            batch.release()
        self.assertEqual(cm.exception.overwritten, [0, 1, 2, 3, 4])

    def test_a_lease_overwritten_while_held(self):
        self.pub.send(b"first" * 10)
        lease = self.sub.peek(timeout=1)
        for i in range(200):
            self.pub.send(bytes([i]) * 64)
        with self.assertRaises(dmaq.Overwritten):
            lease.release()
        with self.assertRaises(dmaq.MessagesLost):
            self.sub.recv(timeout=1)


class Errors(unittest.TestCase):
    """Each DMAQ_E* code reaches Python as its own class with the C detail."""

    def test_every_code_has_a_class(self):
        for code in range(-1, -20, -1):
            self.assertIn(code, dmaq._BY_CODE, f"code {code} ({dmaq.strerror(code)})")
            self.assertTrue(issubclass(dmaq._BY_CODE[code], dmaq.DmaqError))
            self.assertNotEqual(dmaq.strerror(code), dmaq.strerror(-1000), f"code {code} has its own text")

    def test_bad_names_and_schemes(self):
        with self.assertRaises(dmaq.InvalidArgument) as cm:
            dmaq.Publisher("shm://")
        self.assertIn("empty", str(cm.exception))
        with self.assertRaises(dmaq.SchemeError) as cm:
            dmaq.Subscriber("carrier-pigeon://x")
        self.assertIn("carrier-pigeon", str(cm.exception))
        with self.assertRaises(dmaq.InvalidArgument):
            dmaq.Publisher("shm://a/../b")

    def test_missing_and_incompatible_channels(self):
        uri = fresh_uri("err")
        with self.assertRaises(dmaq.ChannelNotFound) as cm:
            dmaq.Subscriber(uri, create=False)
        self.assertIsInstance(cm.exception, FileNotFoundError)
        with self.assertRaises(dmaq.ChannelNotFound):
            dmaq.stat(uri)
        with self.assertRaises(dmaq.ChannelNotFound):
            dmaq.unlink(uri)
        with dmaq.Publisher(uri, kind="queue"):
            with self.assertRaises(dmaq.IncompatibleChannel) as cm:
                dmaq.Subscriber(uri, kind="broadcast")
            self.assertIn("queue", str(cm.exception))
        dmaq.unlink(uri)

    def test_bad_options(self):
        with self.assertRaises(dmaq.InvalidArgument):
            dmaq.Publisher(fresh_uri("err"), capacity=1000)  # not a power of two
        with self.assertRaises(dmaq.InvalidArgument):
            dmaq.Publisher(fresh_uri("err"), kind=dmaq.QUEUE, policy=dmaq.OVERWRITE)
        with self.assertRaises(KeyError):
            dmaq.Publisher(fresh_uri("err"), kind="fifo")

    def test_too_many_subscribers(self):
        uri = fresh_uri("err")
        subs = [dmaq.Subscriber(uri) for _ in range(64)]
        with self.assertRaises(dmaq.LimitReached):
            dmaq.Subscriber(uri)
        for s in subs:
            s.close()
        dmaq.unlink(uri)

    def test_files_that_are_not_channels(self):
        with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
            with open(os.path.join(d, "dmaq.junk"), "wb") as f:
                f.write(b"not a channel at all" * 300)
            with self.assertRaises((dmaq.NotAChannel, dmaq.CorruptChannel)) as cm:
                dmaq.Subscriber(f"shm://{d}/junk")
            self.assertIn("junk", str(cm.exception))
            self.assertEqual(dmaq.gc(d), 0, "gc leaves files that are not channels alone")
            with dmaq.Publisher(f"shm://{d}/stale"):
                pass
            self.assertEqual(dmaq.gc(d), 1, "a channel nobody is attached to is stale")


class QueueStyle(unittest.TestCase):
    def test_factory(self):
        options = dmaq.QueueOptions(queue_name=f"pytest-factory-{os.getpid()}", capacity=1 << 16)
        factory = dmaq.QueueFactory()
        with factory.create_publisher(options) as pub, factory.create_subscriber(options) as sub:
            self.assertTrue(pub.try_enqueue(b"job"))
            self.assertEqual(sub.try_dequeue(), b"job")
            self.assertIsNone(sub.try_dequeue())
            self.assertEqual(dmaq.stat(options.uri).kind, dmaq.QUEUE)
        dmaq.unlink(options.uri)


class Interrupts(unittest.TestCase):
    def test_ctrl_c_ends_a_blocked_recv(self):
        uri = fresh_uri("sigint")
        # The default handler, explicitly: a runner started in the background
        # by a shell without job control hands its children SIGINT ignored.
        code = ("import dmaq, signal, sys\n"
                "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                f"s = dmaq.Subscriber({uri!r})\n"
                "print('waiting', flush=True)\n"
                "s.recv()\n")
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(child.stdout.readline(), b"waiting\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=5)
        self.assertLess(time.monotonic() - t0, 2, "interrupted within a bounded time")
        self.assertIn(b"KeyboardInterrupt", err)
        dmaq.unlink(uri)


class Layout(unittest.TestCase):
    def test_structs_match_the_library(self):
        from dmaq import _native
        for which, struct in ((1, _native.Options), (2, _native.Lease), (3, _native.Stat), (4, _native.SubStat)):
            self.assertEqual(_native.lib.dmaq_struct_size(which), ctypes.sizeof(struct))

    def test_the_library_ships_inside_the_package(self):
        if os.environ.get("DMAQ_LIBRARY"):
            self.skipTest("DMAQ_LIBRARY points elsewhere")
        from dmaq import _native
        self.assertEqual(os.path.dirname(_native.lib._name), os.path.dirname(dmaq.__file__))


if __name__ == "__main__":
    unittest.main()
