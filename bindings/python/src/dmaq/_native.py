"""ctypes declarations of libdmaq.so, one for one with core/include/dmaq/dmaq.h.

The library is the one shipped inside this package (next to this file), or
the one $DMAQ_LIBRARY names (to test against a build tree).
"""
import ctypes
import os
from ctypes import POINTER, Structure, c_char_p, c_int, c_int32, c_int64, c_size_t, c_uint32, c_uint64, c_void_p


class Options(Structure):
    _fields_ = [("size", c_uint32), ("kind", c_uint32), ("policy", c_uint32), ("flags", c_uint32),
                ("capacity", c_uint64), ("max_message", c_uint64), ("mode", c_uint32), ("start", c_uint32),
                ("spin_ns", c_int64), ("shm_dir", c_char_p),
                ("peer_timeout_ns", c_int64), ("key", c_char_p)]


class Lease(Structure):
    _fields_ = [("data", c_void_p), ("len", c_uint64), ("seq", c_uint64), ("timestamp_ns", c_uint64),
                ("publisher_id", c_uint32), ("flags", c_uint32), ("lost", c_uint64), ("opaque_", c_uint64 * 4)]


class Stat(Structure):
    _fields_ = [("size", c_uint32), ("kind", c_uint32), ("policy", c_uint32), ("mode", c_uint32),
                ("capacity", c_uint64), ("max_message", c_uint64), ("bytes_used", c_uint64),
                ("published", c_uint64), ("publishers", c_uint32), ("subscribers", c_uint32),
                ("creator_pid", c_int32), ("flags", c_uint32)]


class SubStat(Structure):
    _fields_ = [("received", c_uint64), ("lost", c_uint64), ("lag", c_uint64), ("lag_bytes", c_uint64),
                ("pid", c_int32), ("alive", c_uint32)]


def _load():
    path = os.environ.get("DMAQ_LIBRARY") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "libdmaq.so")
    try:
        return ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"dmaq: cannot load {path}: {e}") from None


lib = _load()

_P = c_void_p  # opaque handles
_SIGNATURES = {
    "dmaq_version": (c_char_p, []),
    "dmaq_strerror": (c_char_p, [c_int]),
    "dmaq_last_error": (c_char_p, []),
    "dmaq_struct_size": (c_size_t, [c_int]),
    "dmaq_pub_open": (c_int, [c_char_p, POINTER(Options), POINTER(_P)]),
    "dmaq_pub_close": (c_int, [_P]),
    "dmaq_pub_id": (c_uint32, [_P]),
    "dmaq_pub_reserve": (c_int, [_P, c_size_t, POINTER(Lease), c_int64]),
    "dmaq_pub_commit": (c_int, [_P, POINTER(Lease), c_size_t]),
    "dmaq_pub_abort": (c_int, [_P, POINTER(Lease)]),
    "dmaq_pub_send": (c_int, [_P, c_void_p, c_size_t, c_int64]),
    "dmaq_pub_send_many": (c_int, [_P, c_void_p, POINTER(c_size_t), c_size_t, POINTER(c_size_t), c_int64]),
    "dmaq_sub_open": (c_int, [c_char_p, POINTER(Options), POINTER(_P)]),
    "dmaq_sub_close": (c_int, [_P]),
    "dmaq_sub_peek": (c_int, [_P, POINTER(Lease), c_int64]),
    "dmaq_sub_release": (c_int, [_P, POINTER(Lease)]),
    "dmaq_sub_recv": (c_int, [_P, c_void_p, c_size_t, POINTER(c_size_t), c_int64]),
    "dmaq_sub_recv_many": (c_int, [_P, c_void_p, c_size_t, POINTER(c_size_t), c_size_t, POINTER(c_size_t),
                                   c_int64]),
    "dmaq_sub_peek_many": (c_int, [_P, POINTER(Lease), c_size_t, POINTER(c_size_t), c_int64]),
    "dmaq_sub_release_many": (c_int, [_P, POINTER(Lease), c_size_t]),
    "dmaq_channel_stat": (c_int, [c_char_p, POINTER(Stat), POINTER(SubStat), c_size_t]),
    "dmaq_channel_unlink": (c_int, [c_char_p]),
    "dmaq_channel_gc": (c_int, [c_char_p]),
}
for _name, (_restype, _argtypes) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes

# The structs above must be the library's: a mismatch would corrupt memory.
for _which, _struct in ((1, Options), (2, Lease), (3, Stat), (4, SubStat)):
    if lib.dmaq_struct_size(_which) != ctypes.sizeof(_struct):
        raise ImportError(f"dmaq: {_struct.__name__} is {ctypes.sizeof(_struct)} bytes here but "
                          f"{lib.dmaq_struct_size(_which)} in {lib._name}: mismatched library")

# The copying hot calls through cffi's ABI mode where cffi is importable
# (Debian: python3-cffi): a call costs about a third of ctypes' (measured by
# bench/python_bench.py). DMAQ_PYTHON_CTYPES=1 keeps to ctypes. Pointers
# that ctypes hands out are cast for cffi, so one handle serves both.
ffi = fast = None
if not os.environ.get("DMAQ_PYTHON_CTYPES"):
    try:
        import cffi
    except ImportError:
        pass
    else:
        ffi = cffi.FFI()
        ffi.cdef("""
            int dmaq_pub_send(void *pub, const char *data, size_t len, int64_t timeout_ns);
            int dmaq_pub_send_many(void *pub, const char *data, const size_t *lens, size_t count, size_t *sent,
                                   int64_t timeout_ns);
            int dmaq_sub_recv(void *sub, char *buf, size_t cap, size_t *len, int64_t timeout_ns);
            int dmaq_sub_recv_many(void *sub, char *buf, size_t cap, size_t *lens, size_t max_count, size_t *count,
                                   int64_t timeout_ns);
        """)
        fast = ffi.dlopen(lib._name)
