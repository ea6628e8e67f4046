//! The C ABI of `core/include/dmaq/dmaq.h`, declared one for one. The
//! `abi` test compares every struct's size, alignment and field offsets with
//! what the C compiler says. Prefer the safe API of the crate root.
#![allow(non_camel_case_types, missing_docs)]

use std::os::raw::{c_char, c_int, c_void};

pub const DMAQ_OK: c_int = 0;
pub const DMAQ_EINVAL: c_int = -1;
pub const DMAQ_ESCHEME: c_int = -2;
pub const DMAQ_ENOENT: c_int = -3;
pub const DMAQ_EINCOMPAT: c_int = -4;
pub const DMAQ_EMSGSIZE: c_int = -5;
pub const DMAQ_EAGAIN: c_int = -6;
pub const DMAQ_ETIMEDOUT: c_int = -7;
pub const DMAQ_ELOST: c_int = -8;
pub const DMAQ_EOVERWRITTEN: c_int = -9;
pub const DMAQ_ECORRUPT: c_int = -10;
pub const DMAQ_ENOTCHAN: c_int = -11;
pub const DMAQ_EVERSION: c_int = -12;
pub const DMAQ_ELEASE: c_int = -13;
pub const DMAQ_EBUSY: c_int = -14;
pub const DMAQ_ELIMIT: c_int = -15;
pub const DMAQ_ENOMEM: c_int = -16;
pub const DMAQ_ENOSPC: c_int = -17;
pub const DMAQ_EACCES: c_int = -18;
pub const DMAQ_ESYS: c_int = -19;

pub const DMAQ_KIND_ANY: u32 = 0;
pub const DMAQ_KIND_QUEUE: u32 = 1;
pub const DMAQ_KIND_BROADCAST: u32 = 2;
pub const DMAQ_POLICY_ANY: u32 = 0;
pub const DMAQ_POLICY_BLOCK: u32 = 1;
pub const DMAQ_POLICY_OVERWRITE: u32 = 2;
pub const DMAQ_START_NEWEST: u32 = 0;
pub const DMAQ_START_OLDEST: u32 = 1;
pub const DMAQ_OPEN_NO_CREATE: u32 = 0x1;
pub const DMAQ_OPEN_HUGEPAGES: u32 = 0x2;
pub const DMAQ_OPEN_BIND: u32 = 0x4;
pub const DMAQ_OPEN_ENCRYPT: u32 = 0x8;
pub const DMAQ_OPEN_COMPRESS: u32 = 0x10;
pub const DMAQ_OPEN_FENCED: u32 = 0x20;
pub const DMAQ_OPEN_NO_TIMESTAMPS: u32 = 0x40;
pub const DMAQ_LEASE_REDELIVERED: u32 = 0x1;
pub const DMAQ_LEASE_OVERWRITTEN: u32 = 0x2;
pub const DMAQ_BATCH_MAX: usize = 256;
pub const DMAQ_STAT_STALE: u32 = 0x1;
pub const DMAQ_RECORD_HEADER: u64 = 48;
pub const DMAQ_RECORD_ALIGN: u64 = 64;
pub const DMAQ_STRUCT_OPTIONS: c_int = 1;
pub const DMAQ_STRUCT_LEASE: c_int = 2;
pub const DMAQ_STRUCT_STAT: c_int = 3;
pub const DMAQ_STRUCT_SUB_STAT: c_int = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dmaq_options {
    pub size: u32,
    pub kind: u32,
    pub policy: u32,
    pub flags: u32,
    pub capacity: u64,
    pub max_message: u64,
    pub mode: u32,
    pub start: u32,
    pub spin_ns: i64,
    pub shm_dir: *const c_char,
    pub peer_timeout_ns: i64,
    pub key: *const c_char,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dmaq_lease {
    pub data: *mut c_void,
    pub len: u64,
    pub seq: u64,
    pub timestamp_ns: u64,
    pub publisher_id: u32,
    pub flags: u32,
    pub lost: u64,
    pub opaque_: [u64; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct dmaq_stat {
    pub size: u32,
    pub kind: u32,
    pub policy: u32,
    pub mode: u32,
    pub capacity: u64,
    pub max_message: u64,
    pub bytes_used: u64,
    pub published: u64,
    pub publishers: u32,
    pub subscribers: u32,
    pub creator_pid: i32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct dmaq_sub_stat {
    pub received: u64,
    pub lost: u64,
    pub lag: u64,
    pub lag_bytes: u64,
    pub pid: i32,
    pub alive: u32,
}

/// A publisher handle (opaque).
#[repr(C)]
pub struct dmaq_pub {
    _private: [u8; 0],
}

/// A subscriber handle (opaque).
#[repr(C)]
pub struct dmaq_sub {
    _private: [u8; 0],
}

extern "C" {
    pub fn dmaq_version() -> *const c_char;
    pub fn dmaq_strerror(code: c_int) -> *const c_char;
    pub fn dmaq_last_error() -> *const c_char;
    pub fn dmaq_options_init(opts: *mut dmaq_options);
    pub fn dmaq_transport_available(scheme: *const c_char) -> c_int;
    pub fn dmaq_struct_size(which: c_int) -> usize;

    pub fn dmaq_pub_open(uri: *const c_char, opts: *const dmaq_options, out: *mut *mut dmaq_pub) -> c_int;
    pub fn dmaq_pub_close(pub_: *mut dmaq_pub) -> c_int;
    pub fn dmaq_pub_id(pub_: *const dmaq_pub) -> u32;
    pub fn dmaq_pub_reserve(pub_: *mut dmaq_pub, len: usize, lease: *mut dmaq_lease, timeout_ns: i64) -> c_int;
    pub fn dmaq_pub_commit(pub_: *mut dmaq_pub, lease: *mut dmaq_lease, used_len: usize) -> c_int;
    pub fn dmaq_pub_abort(pub_: *mut dmaq_pub, lease: *mut dmaq_lease) -> c_int;
    pub fn dmaq_pub_send(pub_: *mut dmaq_pub, data: *const c_void, len: usize, timeout_ns: i64) -> c_int;
    pub fn dmaq_pub_send_many(
        pub_: *mut dmaq_pub,
        data: *const c_void,
        lens: *const usize,
        count: usize,
        sent: *mut usize,
        timeout_ns: i64,
    ) -> c_int;

    pub fn dmaq_sub_open(uri: *const c_char, opts: *const dmaq_options, out: *mut *mut dmaq_sub) -> c_int;
    pub fn dmaq_sub_close(sub: *mut dmaq_sub) -> c_int;
    pub fn dmaq_sub_peek(sub: *mut dmaq_sub, lease: *mut dmaq_lease, timeout_ns: i64) -> c_int;
    pub fn dmaq_sub_release(sub: *mut dmaq_sub, lease: *mut dmaq_lease) -> c_int;
    pub fn dmaq_sub_recv(sub: *mut dmaq_sub, buf: *mut c_void, cap: usize, len: *mut usize, timeout_ns: i64)
        -> c_int;
    pub fn dmaq_sub_peek_many(
        sub: *mut dmaq_sub,
        leases: *mut dmaq_lease,
        max_count: usize,
        count: *mut usize,
        timeout_ns: i64,
    ) -> c_int;
    pub fn dmaq_sub_release_many(sub: *mut dmaq_sub, leases: *mut dmaq_lease, count: usize) -> c_int;
    pub fn dmaq_sub_recv_many(
        sub: *mut dmaq_sub,
        buf: *mut c_void,
        cap: usize,
        lens: *mut usize,
        max_count: usize,
        count: *mut usize,
        timeout_ns: i64,
    ) -> c_int;

    pub fn dmaq_channel_stat(
        uri: *const c_char,
        stat: *mut dmaq_stat,
        subs: *mut dmaq_sub_stat,
        subs_cap: usize,
    ) -> c_int;
    pub fn dmaq_channel_unlink(uri: *const c_char) -> c_int;
    pub fn dmaq_channel_gc(shm_dir: *const c_char) -> c_int;
}

/// The transport table; the crate only passes it from the tcp archive to
/// the registry.
#[repr(C)]
pub struct dmaq_transport_ops {
    _private: [u8; 0],
}

extern "C" {
    pub fn dmaq_transport_register(ops: *const dmaq_transport_ops) -> c_int;
}

#[cfg(dmaq_static_tcp)]
extern "C" {
    /// In libdmaq-tcp.a (build.rs links it with the `tcp` feature).
    pub fn dmaq_tcp_transport() -> *const dmaq_transport_ops;
}

#[cfg(dmaq_static_rdma)]
extern "C" {
    /// In libdmaq-rdma.a (build.rs links it with the `rdma` feature where
    /// libibverbs and librdmacm are installed).
    pub fn dmaq_rdma_transport() -> *const dmaq_transport_ops;
}
