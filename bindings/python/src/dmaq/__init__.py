"""dmaq: brokerless messaging between processes through shared memory.

A thin layer over libdmaq.so (shipped inside this package) through ctypes,
and cffi's ABI mode for the copying calls where cffi is importable: every
call maps to one C call of core/include/dmaq/dmaq.h, so Python programs
share channels with C, Rust and .NET programs.

    import dmaq

    with dmaq.Publisher("shm://prices", kind=dmaq.BROADCAST) as pub:
        pub.send(b"hello")
        with pub.reserve(64) as buf:          # zero-copy: a view into the ring
            buf[:5] = b"hello"                # committed when the block ends

    with dmaq.Subscriber("shm://prices") as sub:
        msg = sub.recv(timeout=1.0)           # bytes
        with sub.peek() as view:              # zero-copy, read-only
            numbers = numpy.frombuffer(view, dtype=numpy.uint8)  # no copy either
            ...                               # (drop `numbers` before the block ends)

Threads: a handle is used by one thread at a time, except close(), which any
thread may call to end a recv, peek or iteration blocked in another.
Timeouts are in seconds (float); None waits forever, in slices of at most
0.1 s so that Ctrl-C is honoured. Blocking calls release the GIL.
"""
from __future__ import annotations

import ctypes
import enum
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Union

from ._native import Lease as _Lease
from ._native import Options as _Options
from ._native import Stat as _Stat
from ._native import SubStat as _SubStat
from ._native import fast as _fast
from ._native import ffi as _ffi
from ._native import lib as _lib

try:
    from ._version import __version__
except ImportError:  # run from the source tree against $DMAQ_LIBRARY
    __version__ = _lib.dmaq_version().decode()
if __version__ != _lib.dmaq_version().decode():
    raise ImportError(f"dmaq {__version__} found libdmaq {_lib.dmaq_version().decode()}")

Buffer = Union[bytes, bytearray, memoryview]
_SLICE = 0.1  # seconds a blocking call waits inside C before Python looks at signals and close()
_SLICE_NS = int(_SLICE * 1e9)


class Kind(enum.IntEnum):
    """Channel kinds: ANY accepts what exists (and creates a broadcast)."""
    ANY = 0
    QUEUE = 1
    BROADCAST = 2


class Policy(enum.IntEnum):
    """What a full ring does: BLOCK waits for space, OVERWRITE (broadcast only) never waits."""
    ANY = 0
    BLOCK = 1
    OVERWRITE = 2


class Start(enum.IntEnum):
    """Where a new broadcast subscriber starts."""
    NEWEST = 0
    OLDEST = 1


QUEUE, BROADCAST = Kind.QUEUE, Kind.BROADCAST
BLOCK, OVERWRITE = Policy.BLOCK, Policy.OVERWRITE
NEWEST, OLDEST = Start.NEWEST, Start.OLDEST

# ---- errors -------------------------------------------------------------------


class DmaqError(Exception):
    """Base of every dmaq error. `code` is the negative DMAQ_E* code (0 for
    errors of the Python layer); str() is the library's detail message."""
    code = 0


class InvalidArgument(DmaqError, ValueError):
    code = -1


class SchemeError(DmaqError):
    code = -2


class ChannelNotFound(DmaqError, FileNotFoundError):
    code = -3


class IncompatibleChannel(DmaqError):
    code = -4


class MessageTooLarge(DmaqError, ValueError):
    """`needed` holds the message's length when a receive buffer was too small."""
    code = -5
    needed: Optional[int] = None


class WouldBlock(DmaqError):
    code = -6


class Timeout(DmaqError, TimeoutError):
    code = -7


class MessagesLost(DmaqError):
    """The overwrite policy lapped this subscriber: `lost` messages are gone
    and it resumes at the newest. recv_many also sets `messages`: those
    received before the gap. The subscriber stays usable."""
    code = -8
    lost = 0
    messages: List[bytes] = []


class Overwritten(DmaqError):
    """A read lease's bytes were overwritten while held: what was read from
    them must be discarded (the message counts as lost)."""
    code = -9


class CorruptChannel(DmaqError):
    code = -10


class NotAChannel(DmaqError):
    code = -11


class UnsupportedVersion(DmaqError):
    code = -12


class LeaseError(DmaqError):
    code = -13


class Busy(DmaqError):
    code = -14


class LimitReached(DmaqError):
    code = -15


class OutOfMemory(DmaqError, MemoryError):
    code = -16


class NoSpace(DmaqError):
    code = -17


class PermissionDenied(DmaqError, PermissionError):
    code = -18


class OperatingSystemError(DmaqError):
    code = -19


class Closed(DmaqError):
    """The handle was closed (possibly by another thread)."""


class LeaseInUse(DmaqError, BufferError):
    """A lease cannot end while views of its memory (memoryview slices, numpy
    arrays, ...) are alive: they would point at memory dmaq reuses. The
    lease stays held; drop the views and end it again."""


_BY_CODE = {cls.code: cls for cls in DmaqError.__subclasses__() if cls.code}
_EAGAIN, _ETIMEDOUT, _ELOST, _EOVERWRITTEN, _EMSGSIZE = -6, -7, -8, -9, -5
BATCH_MAX = 256  # DMAQ_BATCH_MAX: leases one peek_many may hand out
# data, len, seq, timestamp_ns, publisher_id, flags, lost (then dmaq's own 32 bytes)
_LEASE_FIELDS = struct.Struct("=QQQQIIQ32x")


def _error(rc: int) -> DmaqError:
    detail = (_lib.dmaq_last_error() or b"").decode(errors="replace")
    cls = _BY_CODE.get(rc, DmaqError)
    e = cls(detail or _lib.dmaq_strerror(rc).decode())
    e.code = rc
    return e


def strerror(code: int) -> str:
    """The fixed description of a DMAQ_E* code."""
    return _lib.dmaq_strerror(code).decode()


def version() -> str:
    """The version of the loaded libdmaq."""
    return _lib.dmaq_version().decode()


def _ns(timeout: Optional[float]) -> int:
    return -1 if timeout is None else max(0, int(timeout * 1e9))


# ---- handles ------------------------------------------------------------------


class _Handle:
    """What publishers and subscribers share: the C handle, and closing it
    safely while another thread may be inside a call on it."""

    _close_fn = None

    def __init__(self) -> None:
        self._ptr: Optional[int] = None
        # Without a lock (a lock costs as much as the call it guards): list
        # append and pop are atomic under the GIL, so a call registers in
        # _inflight before it looks at _closing, and whoever leaves the
        # handle closing and unused destroys it, once (_alive holds one token).
        self._inflight: list = []
        self._alive: list = []
        self._closing = False
        self._lease: Optional[_LeaseBase] = None

    def _opened(self, ptr: int) -> None:
        self._ptr = ptr
        self._alive.append(ptr)
        self._cptr = _ffi.cast("void *", ptr) if _ffi else None  # the same handle, for the cffi calls

    def _enter(self) -> int:
        self._inflight.append(None)
        ptr = self._ptr
        if self._closing or ptr is None:
            self._leave()
            raise Closed(f"{type(self).__name__} on {self.uri!r} is closed")
        return ptr

    def _leave(self) -> None:
        self._inflight.pop()
        if self._closing and not self._inflight:
            self._destroy()

    def _destroy(self) -> None:
        try:
            ptr = self._alive.pop()
        except IndexError:  # destroyed already
            return
        self._ptr = None
        type(self)._close_fn(ptr)

    def _wait(self, fn, args: tuple, timeout: Optional[float]) -> int:
        """Call fn(*args, timeout_ns) in slices until it returns something
        other than a timeout, the timeout is over, or the handle is closing."""
        if timeout is None:
            rc = fn(*args, _SLICE_NS)  # the common case: one call
            if rc != _ETIMEDOUT and rc != _EAGAIN:
                return rc
            deadline = None
        elif timeout <= _SLICE:
            return fn(*args, _ns(timeout))
        else:
            deadline = time.monotonic() + timeout
        while True:
            if self._closing:
                raise Closed(f"{type(self).__name__} on {self.uri!r} was closed while waiting")
            left = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            rc = fn(*args, _ns(max(left, 0.0)))
            if rc != _ETIMEDOUT and rc != _EAGAIN:
                return rc
            if deadline is not None and time.monotonic() >= deadline:
                return rc

    def close(self) -> None:
        """Close the handle; ends an outstanding lease first (a write lease is
        aborted). Raises LeaseInUse, and stays open, if views of that lease
        are alive. Any thread; a call blocked in another thread ends with
        Closed within 0.1 s. Closing twice does nothing."""
        lease = self._lease
        if lease is not None and not self._closing:
            lease._end_for_close()
        self._closing = True
        if not self._inflight:
            self._destroy()

    @property
    def closed(self) -> bool:
        return self._ptr is None or self._closing

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # views still alive: keep the memory mapped rather than leave them dangling
            pass


_OPEN_NO_CREATE, _OPEN_BIND, _OPEN_ENCRYPT, _OPEN_COMPRESS, _OPEN_NO_TIMESTAMPS = 0x1, 0x4, 0x8, 0x10, 0x40


def _options(kind, policy, capacity, max_message, mode, start, spin_ns, shm_dir, create, net=None,
             timestamps=True) -> _Options:
    o = _Options()
    o.size = ctypes.sizeof(_Options)
    o.kind = Kind[kind.upper()] if isinstance(kind, str) else int(kind)
    o.policy = Policy[policy.upper()] if isinstance(policy, str) else int(policy)
    o.flags = (0 if create else _OPEN_NO_CREATE) | (0 if timestamps else _OPEN_NO_TIMESTAMPS)
    net = net or {}
    if net.get("bind"):
        o.flags |= _OPEN_BIND
    if net.get("encrypt"):
        o.flags |= _OPEN_ENCRYPT
    if net.get("compress"):
        o.flags |= _OPEN_COMPRESS
    if net.get("key") is not None:
        o.key = net["key"].encode() if isinstance(net["key"], str) else bytes(net["key"])
    if net.get("peer_timeout") is not None:
        o.peer_timeout_ns = int(net["peer_timeout"] * 1e9)
    o.capacity = capacity
    o.max_message = max_message
    o.mode = mode
    o.start = Start[start.upper()] if isinstance(start, str) else int(start)
    o.spin_ns = -1 if spin_ns is None else spin_ns
    o.shm_dir = shm_dir.encode() if shm_dir else None
    return o


def _open(fn, uri: str, opts: _Options) -> int:
    ptr = ctypes.c_void_p()
    rc = fn(uri.encode(), ctypes.byref(opts), ctypes.byref(ptr))
    if rc < 0:
        raise _error(rc)
    return ptr.value


_OPEN_DOC = """
    uri: "shm://NAME" (or "shm:///DIR/NAME"). The channel is created from
    the options if it does not exist (unless create=False); fields left 0
    take the existing channel's values. kind: Kind or "queue"/"broadcast";
    policy: Policy or "block"/"overwrite"; capacity: ring bytes, a power of
    two; max_message: largest payload; mode: file permissions (0600);
    start: where a broadcast subscriber starts; spin_ns: how long waits spin
    before sleeping (None = 50 us); shm_dir: directory of the channel files.
    Network URIs ("tcp://HOST:PORT/NAME"): bind=True hosts the channel and
    listens (else connect to the process that does); key: the pre-shared
    key; encrypt / compress: seal / zstd-compress payloads (binding; a
    connecting encrypt=True insists on it); peer_timeout: seconds of silence
    after which a peer counts as gone (None = 5).
    Publishers only: timestamps=False leaves messages unstamped (their
    timestamp_ns is 0), which makes small sends cheaper where reading the
    clock is slow.
    Raises a DmaqError subclass saying what was wrong."""


class Publisher(_Handle):
    __doc__ = "A publisher on a channel; a context manager that closes it." + _OPEN_DOC
    _close_fn = _lib.dmaq_pub_close

    def __init__(self, uri: str, *, kind: Union[Kind, str] = Kind.ANY, policy: Union[Policy, str] = Policy.ANY,
                 capacity: int = 0, max_message: int = 0, mode: int = 0, start: Union[Start, str] = Start.NEWEST,
                 spin_ns: Optional[int] = None, shm_dir: Optional[str] = None, create: bool = True,
                 bind: bool = False, key: Union[str, bytes, None] = None, encrypt: bool = False,
                 compress: bool = False, peer_timeout: Optional[float] = None, timestamps: bool = True) -> None:
        super().__init__()
        self.uri = uri
        net = dict(bind=bind, key=key, encrypt=encrypt, compress=compress, peer_timeout=peer_timeout)
        self._opened(_open(_lib.dmaq_pub_open, uri,
                           _options(kind, policy, capacity, max_message, mode, start, spin_ns, shm_dir, create, net,
                                    timestamps)))

    @property
    def id(self) -> int:
        """This publisher's id, as subscribers see it in ReadLease.publisher_id."""
        ptr = self._enter()
        try:
            return _lib.dmaq_pub_id(ptr)
        finally:
            self._leave()

    def send(self, data: Buffer, timeout: Optional[float] = None) -> None:
        """Publish one message, a copy of `data` (any bytes-like object).
        Waits up to `timeout` for space (None: forever); raises Timeout."""
        ptr = self._enter()
        try:
            if _fast:
                if type(data) is not bytes:
                    data = _ffi.from_buffer(data)
                rc = self._wait(_fast.dmaq_pub_send, (self._cptr, data, len(data)), timeout)
            else:
                if type(data) is not bytes:
                    view = memoryview(data)
                    data = (ctypes.c_char * view.nbytes).from_buffer(view) if not view.readonly else bytes(view)
                rc = self._wait(_lib.dmaq_pub_send, (ptr, data, len(data)), timeout)
            if rc < 0:
                raise _error(rc)
        finally:
            self._leave()

    def try_send(self, data: Buffer) -> bool:
        """Publish without waiting; False if the ring is full."""
        try:
            self.send(data, timeout=0)
            return True
        except (WouldBlock, Timeout):
            return False

    try_enqueue = try_send  # the name Cloudtoid.Interprocess users know

    def send_many(self, messages: Iterable[Buffer], timeout: Optional[float] = None) -> int:
        """Publish every message of `messages` in order with one call into the
        library (far faster than send() per message). Waits up to `timeout`
        in all. Returns how many were published: all of them, or raises with
        `e.sent` set to how many were published before the failure."""
        items = messages if isinstance(messages, (list, tuple)) else list(messages)
        data = b"".join(items)
        ptr = self._enter()
        try:
            if _fast:
                lens, sent = _ffi.new("size_t[]", [len(m) for m in items]), _ffi.new("size_t *")
                rc = _fast.dmaq_pub_send_many(self._cptr, data, lens, len(items), sent, _ns(timeout))
                done = sent[0]
            else:
                lens, sent = (ctypes.c_size_t * len(items))(*map(len, items)), ctypes.c_size_t()
                rc = _lib.dmaq_pub_send_many(ptr, data, lens, len(items), ctypes.byref(sent), _ns(timeout))
                done = sent.value
            if rc < 0:
                e = _error(rc)
                e.sent = done
                raise e
            return done
        finally:
            self._leave()

    def reserve(self, size: int, timeout: Optional[float] = None) -> "WriteLease":
        """Reserve `size` bytes in the ring for a message written in place.
        `with pub.reserve(n) as buf:` gives a writable memoryview; the
        message is committed when the block ends normally and aborted if it
        raises. Without `with`, call commit(used) or abort()."""
        ptr = self._enter()
        try:
            lease = _Lease()
            rc = self._wait(_lib.dmaq_pub_reserve, (ptr, size, ctypes.byref(lease)), timeout)
            if rc < 0:
                raise _error(rc)
            return WriteLease(self, lease)
        finally:
            self._leave()


class Subscriber(_Handle):
    __doc__ = "A subscriber on a channel; a context manager that closes it, and an iterator of messages." + _OPEN_DOC
    _close_fn = _lib.dmaq_sub_close

    def __init__(self, uri: str, *, kind: Union[Kind, str] = Kind.ANY, policy: Union[Policy, str] = Policy.ANY,
                 capacity: int = 0, max_message: int = 0, mode: int = 0, start: Union[Start, str] = Start.NEWEST,
                 spin_ns: Optional[int] = None, shm_dir: Optional[str] = None, create: bool = True,
                 bind: bool = False, key: Union[str, bytes, None] = None, encrypt: bool = False,
                 compress: bool = False, peer_timeout: Optional[float] = None) -> None:
        super().__init__()
        self.uri = uri
        net = dict(bind=bind, key=key, encrypt=encrypt, compress=compress, peer_timeout=peer_timeout)
        self._opened(_open(_lib.dmaq_sub_open, uri,
                           _options(kind, policy, capacity, max_message, mode, start, spin_ns, shm_dir, create, net)))
        try:
            self.max_message: int = stat(uri).max_message
        except DmaqError:
            self._closing = True
            self._destroy()
            raise
        if _fast:
            self._buf = _ffi.new("char[]", max(self.max_message, 1))
            self._len = _ffi.new("size_t *")
        else:
            self._buf = ctypes.create_string_buffer(max(self.max_message, 1))
            self._len = ctypes.c_size_t()
            self._len_ref = ctypes.byref(self._len)
        self._batch_buf = None
        self._batch_lens = self._batch_count = None
        self._batch_leases: Optional[ctypes.Array] = None

    def _recv_into_address(self, address, capacity: int, timeout: Optional[float]) -> int:
        ptr = self._enter()
        try:
            if _fast:
                rc = self._wait(_fast.dmaq_sub_recv, (self._cptr, address, capacity, self._len), timeout)
                length = self._len[0]
            else:
                rc = self._wait(_lib.dmaq_sub_recv, (ptr, address, capacity, self._len_ref), timeout)
                length = self._len.value
        finally:
            self._leave()
        if rc == 0:
            return length
        e = _error(rc)
        if rc == _ELOST:
            e.lost = length
        elif rc == _EMSGSIZE:
            e.needed = length
        raise e

    def recv(self, timeout: Optional[float] = None) -> bytes:
        """The next message, copied. Raises Timeout if none came in `timeout`
        seconds (None: wait forever), MessagesLost when lapped (overwrite)."""
        n = self._recv_into_address(self._buf, len(self._buf), timeout)
        return _ffi.unpack(self._buf, n) if _fast else ctypes.string_at(self._buf, n)

    def try_recv(self) -> Optional[bytes]:
        """The next message if one is waiting, else None."""
        try:
            return self.recv(timeout=0)
        except (WouldBlock, Timeout):
            return None

    try_dequeue = try_recv

    def recv_into(self, buffer: Union[bytearray, memoryview], timeout: Optional[float] = None) -> int:
        """Copy the next message into `buffer` (any writable bytes-like object,
        a numpy array too) and return its length; nothing is allocated. Raises
        MessageTooLarge (with `needed`) and leaves the message unread if it
        does not fit."""
        view = memoryview(buffer)
        if view.readonly:
            raise InvalidArgument("recv_into needs a writable buffer")
        if _fast:
            return self._recv_into_address(_ffi.from_buffer("char[]", view, require_writable=True), view.nbytes,
                                           timeout)
        return self._recv_into_address((ctypes.c_char * view.nbytes).from_buffer(view), view.nbytes, timeout)

    def recv_many(self, max_count: int = 64, timeout: Optional[float] = None) -> List[bytes]:
        """Up to `max_count` messages with one call into the library: waits up
        to `timeout` for the first, then takes those already waiting. Raises
        Timeout if none came; MessagesLost (with `messages`, those before the
        gap) when lapped."""
        if max_count < 1:
            raise InvalidArgument("max_count must be at least 1")
        if self._batch_lens is None or len(self._batch_lens) < max_count:
            self._batch_lens = _ffi.new("size_t[]", max_count) if _fast else (ctypes.c_size_t * max_count)()
            self._batch_count = _ffi.new("size_t *") if _fast else ctypes.c_size_t()
        if self._batch_buf is None:
            size = max(self.max_message, 1 << 18)
            self._batch_buf = _ffi.new("char[]", size) if _fast else ctypes.create_string_buffer(size)
        buf, lens, count = self._batch_buf, self._batch_lens, self._batch_count
        ptr = self._enter()
        try:
            if _fast:
                rc = self._wait(_fast.dmaq_sub_recv_many, (self._cptr, buf, len(buf), lens, max_count, count),
                                timeout)
                n = count[0]
            else:
                rc = self._wait(_lib.dmaq_sub_recv_many, (ptr, buf, len(buf), lens, max_count, ctypes.byref(count)),
                                timeout)
                n = count.value
        finally:
            self._leave()
        raw = _ffi.buffer(buf) if _fast else memoryview(buf)
        out, off = [], 0
        for i in range(n):
            end = off + lens[i]
            out.append(raw[off:end])
            off = end
        if not _fast:
            out = [bytes(m) for m in out]
            raw.release()
        if rc < 0:
            e = _error(rc)
            if rc == _ELOST:
                e.lost, e.messages = lens[n], out
            raise e
        return out

    def peek(self, timeout: Optional[float] = None) -> "ReadLease":
        """The next message in place, without a copy. `with sub.peek() as
        view:` gives a read-only memoryview released when the block ends;
        the ReadLease also carries seq, timestamp_ns, publisher_id and
        redelivered. Raises as recv()."""
        ptr = self._enter()
        try:
            lease = _Lease()
            rc = self._wait(_lib.dmaq_sub_peek, (ptr, ctypes.byref(lease)), timeout)
            if rc < 0:
                e = _error(rc)
                if rc == _ELOST:
                    e.lost = lease.lost
                raise e
            return ReadLease(self, lease)
        finally:
            self._leave()

    def peek_many(self, max_count: int = BATCH_MAX, timeout: Optional[float] = None) -> "ReadBatch":
        """Up to `max_count` (at most 256) messages in place, with one call
        into the library: waits up to `timeout` for the first, then takes
        those already waiting. `with sub.peek_many() as views:` gives a list
        of read-only memoryviews, all released when the block ends (the way
        to read at more than a million messages a second from Python).
        Raises as peek()."""
        if not 1 <= max_count <= BATCH_MAX:
            raise InvalidArgument(f"max_count is {max_count}; it must be 1 to {BATCH_MAX}")
        if self._batch_leases is None:
            self._batch_leases = (_Lease * BATCH_MAX)()
            self._batch_got = ctypes.c_size_t()
        leases, got = self._batch_leases, self._batch_got
        ptr = self._enter()
        try:
            rc = self._wait(_lib.dmaq_sub_peek_many, (ptr, leases, max_count, ctypes.byref(got)), timeout)
            if rc < 0:
                e = _error(rc)
                if rc == _ELOST:
                    e.lost = leases[0].lost
                raise e
            return ReadBatch(self, leases, got.value)
        finally:
            self._leave()

    def __iter__(self) -> Iterator[bytes]:
        """Messages as they come, until the subscriber is closed (from another
        thread, say). A lapped subscriber's iteration raises MessagesLost;
        catch it and iterate again."""
        while True:
            try:
                yield self.recv()
            except Closed:
                return


# ---- leases -------------------------------------------------------------------


class _LeaseBase:
    """A view of ring memory that never outlives the lease under it."""

    def __init__(self, handle: _Handle, lease: _Lease, readonly: bool) -> None:
        self._handle = handle
        self._lease = lease
        self._done = False
        n = lease.len
        self._array = (ctypes.c_char * n).from_address(lease.data) if n else ctypes.create_string_buffer(0)
        self._readonly = readonly
        self._refs = sys.getrefcount(self._array)  # a view (and its slices) holds one more until released
        self.view: memoryview = self._new_view()
        handle._lease = self

    def _new_view(self) -> memoryview:
        view = memoryview(self._array).cast("B")
        return view.toreadonly() if self._readonly else view

    def __len__(self) -> int:
        return self._lease.len

    def _release_views(self) -> None:
        try:
            self.view.release()
        except BufferError:  # something took a buffer from it (numpy.frombuffer, bytes-like consumers)
            raise LeaseInUse("a view of the lease's memory is still in use (a numpy array or other buffer "
                             "taken from it); drop it before the lease ends") from None
        if sys.getrefcount(self._array) > self._refs:  # slices and views of views share the released view's memory
            self.view = self._new_view()  # the lease stays held, and usable through its own view
            raise LeaseInUse("views of the lease's memory (memoryview slices or casts, or numpy arrays made from "
                             "them) are still alive; drop them before the lease ends")

    def _finish(self, call) -> None:
        if self._done:
            raise LeaseError("the lease has already ended")
        self._release_views()
        ptr = self._handle._enter()
        try:
            self._done = True
            self._handle._lease = None
            rc = call(ptr, ctypes.byref(self._lease))
        finally:
            self._handle._leave()
        if rc < 0:
            raise _error(rc)

    def _end_for_close(self) -> None:
        raise NotImplementedError


class ReadLease(_LeaseBase):
    """A message read in place (from Subscriber.peek). `view` is a read-only
    memoryview valid until release()."""

    def __init__(self, sub: Subscriber, lease: _Lease) -> None:
        super().__init__(sub, lease, readonly=True)
        self.seq: int = lease.seq
        self.timestamp_ns: int = lease.timestamp_ns
        self.publisher_id: int = lease.publisher_id
        self.redelivered: bool = bool(lease.flags & 0x1)

    def release(self) -> None:
        """End the lease. Raises Overwritten (overwrite policy) if the bytes
        were overwritten while held, LeaseInUse if views are still alive, and
        LeaseError if it already ended."""
        self._finish(_lib.dmaq_sub_release)

    def _end_for_close(self) -> None:
        if not self._done:
            try:
                self.release()
            except Overwritten:
                pass

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, *exc) -> None:
        self.release()


class WriteLease(_LeaseBase):
    """Bytes reserved in the ring (from Publisher.reserve). `view` is a
    writable memoryview valid until commit() or abort()."""

    def __init__(self, pub: Publisher, lease: _Lease) -> None:
        super().__init__(pub, lease, readonly=False)

    def commit(self, used: Optional[int] = None) -> None:
        """Publish the first `used` bytes (default: all reserved)."""
        n = len(self) if used is None else used
        if not 0 <= n <= len(self):
            raise InvalidArgument(f"used={n} is outside the {len(self)} bytes reserved")
        self._finish(lambda ptr, lease: _lib.dmaq_pub_commit(ptr, lease, n))

    def abort(self) -> None:
        """Give the reservation up; nobody sees it."""
        self._finish(_lib.dmaq_pub_abort)

    def _end_for_close(self) -> None:
        if not self._done:
            self.abort()

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class ReadBatch:
    """Messages read in place (from Subscriber.peek_many). `views` is a list
    of read-only memoryviews, valid until release(); `with` releases them.
    Views of their memory must not outlive the batch (LeaseInUse)."""

    def __init__(self, sub: Subscriber, leases: ctypes.Array, count: int) -> None:
        self._handle, self._leases, self._count, self._done = sub, leases, count, False
        raw = memoryview(leases).cast("B")
        self._fields = list(_LEASE_FIELDS.iter_unpack(raw[:count * _LEASE_FIELDS.size]))
        raw.release()
        # One exporter per run of messages at rising addresses (the ring
        # wraps at most once in a batch), sliced per message: a slice costs
        # far less than an exporter of its own.
        self._arrays: list = []
        self._refs: list = []
        self._spans: list = []
        views = []
        fields, i = self._fields, 0
        while i < count:
            base, end, j = fields[i][0], fields[i][0] + fields[i][1], i + 1
            while j < count and fields[j][0] >= end:
                end = fields[j][0] + fields[j][1]
                j += 1
            self._arrays.append((ctypes.c_char * max(end - base, 1)).from_address(base))
            self._refs.append(sys.getrefcount(self._arrays[-1]))
            span = memoryview(self._arrays[-1]).cast("B").toreadonly()
            self._spans.append(span)
            views += [span[f[0] - base:f[0] - base + f[1]] for f in fields[i:j]]
            i = j
        self.views: List[memoryview] = views
        sub._lease = self

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[memoryview]:
        return iter(self.views)

    def info(self, i: int) -> tuple:
        """(seq, timestamp_ns, publisher_id, redelivered) of message i."""
        f = self._fields[i]
        return f[2], f[3], f[4], bool(f[5] & 0x1)

    def release(self) -> None:
        """End every lease of the batch. Raises Overwritten (with
        `overwritten`, the indexes overrun while held) under the overwrite
        policy, LeaseInUse if views of the memory are still alive, LeaseError
        if it already ended."""
        if self._done:
            raise LeaseError("the batch has already ended")
        try:
            for v in self.views:
                v.release()
        except BufferError:
            raise LeaseInUse("a view of the batch's memory is still in use (a numpy array or other buffer "
                             "taken from it); drop it before the batch ends") from None
        for span in self._spans:
            span.release()
        if any(sys.getrefcount(self._arrays[k]) > self._refs[k] for k in range(len(self._arrays))):
            raise LeaseInUse("views of the batch's memory (slices of its views, or numpy arrays made from them) "
                             "are still alive; drop them, then release again")
        ptr = self._handle._enter()
        try:
            self._done = True
            self._handle._lease = None
            rc = _lib.dmaq_sub_release_many(ptr, self._leases, self._count)
        finally:
            self._handle._leave()
        if rc < 0:
            e = _error(rc)
            if rc == _EOVERWRITTEN:
                e.overwritten = [i for i in range(self._count) if self._leases[i].flags & 0x2]
            raise e

    def _end_for_close(self) -> None:
        if not self._done:
            try:
                self.release()
            except Overwritten:
                pass

    def __enter__(self) -> List[memoryview]:
        return self.views

    def __exit__(self, *exc) -> None:
        self.release()


# ---- channels -----------------------------------------------------------------


@dataclass
class SubscriberStat:
    received: int
    lost: int
    lag: int
    lag_bytes: int
    pid: int
    alive: bool


@dataclass
class ChannelStat:
    kind: Kind
    policy: Policy
    mode: int
    capacity: int
    max_message: int
    bytes_used: int
    published: int
    publishers: int
    subscribers: int
    creator_pid: int
    stale: bool
    subscriber_stats: List[SubscriberStat] = field(default_factory=list)


def stat(uri: str) -> ChannelStat:
    """Describe a channel: its options, fill, peers and every subscriber's
    lag and losses. Raises ChannelNotFound if it does not exist."""
    st = _Stat()
    st.size = ctypes.sizeof(_Stat)
    subs = (_SubStat * 64)()
    rc = _lib.dmaq_channel_stat(uri.encode(), ctypes.byref(st), subs, 64)
    if rc < 0:
        raise _error(rc)
    return ChannelStat(Kind(st.kind), Policy(st.policy), st.mode, st.capacity, st.max_message, st.bytes_used,
                       st.published, st.publishers, st.subscribers, st.creator_pid, bool(st.flags & 0x1),
                       [SubscriberStat(s.received, s.lost, s.lag, s.lag_bytes, s.pid, bool(s.alive))
                        for s in subs[:min(rc, 64)]])


def unlink(uri: str) -> None:
    """Remove a channel's name; open handles keep working."""
    rc = _lib.dmaq_channel_unlink(uri.encode())
    if rc < 0:
        raise _error(rc)


def gc(shm_dir: Optional[str] = None) -> int:
    """Remove the stale channels (no live process attached) of a directory
    (default: $DMAQ_SHM_DIR, else /dev/shm); returns how many."""
    rc = _lib.dmaq_channel_gc(shm_dir.encode() if shm_dir else None)
    if rc < 0:
        raise _error(rc)
    return rc


# ---- Cloudtoid.Interprocess style -----------------------------------------------


@dataclass
class QueueOptions:
    """A channel described the way Cloudtoid.Interprocess users describe a queue."""
    queue_name: str
    capacity: int = 1 << 20
    kind: Kind = Kind.QUEUE
    policy: Policy = Policy.BLOCK
    max_message: int = 0
    shm_dir: Optional[str] = None

    @property
    def uri(self) -> str:
        return "shm://" + self.queue_name


class QueueFactory:
    """Makes publishers and subscribers from QueueOptions."""

    def create_publisher(self, options: QueueOptions) -> Publisher:
        return Publisher(options.uri, kind=options.kind, policy=options.policy, capacity=options.capacity,
                         max_message=options.max_message, shm_dir=options.shm_dir)

    def create_subscriber(self, options: QueueOptions) -> Subscriber:
        return Subscriber(options.uri, kind=options.kind, policy=options.policy, capacity=options.capacity,
                          max_message=options.max_message, shm_dir=options.shm_dir)


__all__ = [
    "Publisher", "Subscriber", "ReadLease", "WriteLease", "ReadBatch", "BATCH_MAX", "Kind", "Policy", "Start", "QUEUE", "BROADCAST", "BLOCK",
    "OVERWRITE", "NEWEST", "OLDEST", "stat", "unlink", "gc", "version", "strerror", "ChannelStat", "SubscriberStat",
    "QueueOptions", "QueueFactory", "DmaqError", "InvalidArgument", "SchemeError", "ChannelNotFound",
    "IncompatibleChannel", "MessageTooLarge", "WouldBlock", "Timeout", "MessagesLost", "Overwritten",
    "CorruptChannel", "NotAChannel", "UnsupportedVersion", "LeaseError", "Busy", "LimitReached", "OutOfMemory",
    "NoSpace", "PermissionDenied", "OperatingSystemError", "Closed", "LeaseInUse", "__version__",
]
