//! Brokerless messaging between processes through shared memory: the Rust
//! face of [dmaq](https://example.invalid/dmaq). A safe layer over the C
//! ABI ([`ffi`]): the same channels as C, Python and .NET programs.
//!
//! ```
//! use dmaq::{Options, Publisher, Subscriber};
//! use std::time::Duration;
//!
//! let uri = format!("shm://doc-intro-{}", std::process::id());
//! let mut sub = Subscriber::open(&uri, &Options::broadcast().capacity(1 << 16))?;
//! let mut publisher = Publisher::open(&uri, &Options::new())?;
//!
//! publisher.send(b"hello", None)?;                       // a copy
//! let mut lease = publisher.reserve(5, None)?;           // zero-copy: bytes in the ring
//! lease.copy_from_slice(b"world");
//! lease.commit(5)?;                                      // dropping it uncommitted aborts
//!
//! assert_eq!(sub.recv(Some(Duration::from_secs(1)))?, b"hello");
//! let msg = sub.peek(Some(Duration::from_secs(1)))?;    // zero-copy read, released on drop
//! assert_eq!(&*msg, b"world");
//! drop(msg);
//! dmaq::unlink(&uri)?;
//! # Ok::<(), dmaq::Error>(())
//! ```
//!
//! Threads: a [`Publisher`] or [`Subscriber`] is used by one thread at a time
//! and may move between threads (`Send`, not `Sync`), as the C header says;
//! open one handle per thread to share a channel. Leases borrow their handle
//! mutably, so a message cannot be used after it is released.
#![warn(missing_docs)]

pub mod ffi;

use std::ffi::{CStr, CString};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::raw::c_int;
use std::ptr::{self, NonNull};
use std::time::Duration;

/// What went wrong: one variant per `DMAQ_E*` code, each carrying the C
/// library's detail message (what exactly was wrong).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// `DMAQ_EINVAL`: an argument or option is invalid.
    InvalidArgument(String),
    /// `DMAQ_ESCHEME`: unknown or unavailable URI scheme.
    Scheme(String),
    /// `DMAQ_ENOENT`: the channel does not exist.
    NotFound(String),
    /// `DMAQ_EINCOMPAT`: the channel exists with another kind, policy or size.
    Incompatible(String),
    /// `DMAQ_EMSGSIZE`: the message is larger than the channel's maximum or
    /// the buffer; `needed` is its length when a receive buffer was short.
    MessageTooLarge {
        /// The length of the message that did not fit, if known.
        needed: Option<usize>,
        /// The library's detail message.
        detail: String,
    },
    /// `DMAQ_EAGAIN`: it would have to wait (a zero timeout).
    WouldBlock(String),
    /// `DMAQ_ETIMEDOUT`: the timeout passed.
    TimedOut(String),
    /// `DMAQ_ELOST`: the overwrite policy lapped this subscriber; `lost`
    /// messages are gone and it resumes at the newest. Not fatal.
    Lost {
        /// How many messages were lost.
        lost: u64,
        /// The library's detail message.
        detail: String,
    },
    /// `DMAQ_EOVERWRITTEN`: a read lease was overwritten while held; what
    /// was read from it must be discarded.
    Overwritten(String),
    /// `DMAQ_ECORRUPT`: the channel is corrupt.
    Corrupt(String),
    /// `DMAQ_ENOTCHAN`: the file is not a dmaq channel.
    NotAChannel(String),
    /// `DMAQ_EVERSION`: the channel has an unsupported layout version.
    Version(String),
    /// `DMAQ_ELEASE`: the lease is not outstanding on this handle.
    Lease(String),
    /// `DMAQ_EBUSY`: the handle already holds a lease.
    Busy(String),
    /// `DMAQ_ELIMIT`: too many publishers or subscribers on the channel.
    Limit(String),
    /// `DMAQ_ENOMEM`: out of memory.
    NoMemory(String),
    /// `DMAQ_ENOSPC`: no space for the channel (is /dev/shm too small?).
    NoSpace(String),
    /// `DMAQ_EACCES`: permission denied.
    PermissionDenied(String),
    /// `DMAQ_ESYS`: an operating-system call failed.
    System(String),
    /// A code this crate does not know (from a newer library).
    Unknown {
        /// The negative status code.
        code: i32,
        /// The library's detail message.
        detail: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The error of a failed call: `code` and the calling thread's
    /// `dmaq_last_error()`.
    fn from_code(code: c_int) -> Error {
        let detail = unsafe { cstr(ffi::dmaq_last_error()) };
        let detail = if detail.is_empty() { strerror(code) } else { detail };
        match code {
            ffi::DMAQ_EINVAL => Error::InvalidArgument(detail),
            ffi::DMAQ_ESCHEME => Error::Scheme(detail),
            ffi::DMAQ_ENOENT => Error::NotFound(detail),
            ffi::DMAQ_EINCOMPAT => Error::Incompatible(detail),
            ffi::DMAQ_EMSGSIZE => Error::MessageTooLarge { needed: None, detail },
            ffi::DMAQ_EAGAIN => Error::WouldBlock(detail),
            ffi::DMAQ_ETIMEDOUT => Error::TimedOut(detail),
            ffi::DMAQ_ELOST => Error::Lost { lost: 0, detail },
            ffi::DMAQ_EOVERWRITTEN => Error::Overwritten(detail),
            ffi::DMAQ_ECORRUPT => Error::Corrupt(detail),
            ffi::DMAQ_ENOTCHAN => Error::NotAChannel(detail),
            ffi::DMAQ_EVERSION => Error::Version(detail),
            ffi::DMAQ_ELEASE => Error::Lease(detail),
            ffi::DMAQ_EBUSY => Error::Busy(detail),
            ffi::DMAQ_ELIMIT => Error::Limit(detail),
            ffi::DMAQ_ENOMEM => Error::NoMemory(detail),
            ffi::DMAQ_ENOSPC => Error::NoSpace(detail),
            ffi::DMAQ_EACCES => Error::PermissionDenied(detail),
            ffi::DMAQ_ESYS => Error::System(detail),
            _ => Error::Unknown { code, detail },
        }
    }

    /// The negative `DMAQ_E*` code.
    pub fn code(&self) -> i32 {
        match self {
            Error::InvalidArgument(_) => ffi::DMAQ_EINVAL,
            Error::Scheme(_) => ffi::DMAQ_ESCHEME,
            Error::NotFound(_) => ffi::DMAQ_ENOENT,
            Error::Incompatible(_) => ffi::DMAQ_EINCOMPAT,
            Error::MessageTooLarge { .. } => ffi::DMAQ_EMSGSIZE,
            Error::WouldBlock(_) => ffi::DMAQ_EAGAIN,
            Error::TimedOut(_) => ffi::DMAQ_ETIMEDOUT,
            Error::Lost { .. } => ffi::DMAQ_ELOST,
            Error::Overwritten(_) => ffi::DMAQ_EOVERWRITTEN,
            Error::Corrupt(_) => ffi::DMAQ_ECORRUPT,
            Error::NotAChannel(_) => ffi::DMAQ_ENOTCHAN,
            Error::Version(_) => ffi::DMAQ_EVERSION,
            Error::Lease(_) => ffi::DMAQ_ELEASE,
            Error::Busy(_) => ffi::DMAQ_EBUSY,
            Error::Limit(_) => ffi::DMAQ_ELIMIT,
            Error::NoMemory(_) => ffi::DMAQ_ENOMEM,
            Error::NoSpace(_) => ffi::DMAQ_ENOSPC,
            Error::PermissionDenied(_) => ffi::DMAQ_EACCES,
            Error::System(_) => ffi::DMAQ_ESYS,
            Error::Unknown { code, .. } => *code,
        }
    }

    /// The library's detail message.
    pub fn detail(&self) -> &str {
        match self {
            Error::MessageTooLarge { detail, .. } | Error::Lost { detail, .. } | Error::Unknown { detail, .. } => {
                detail
            }
            Error::InvalidArgument(d)
            | Error::Scheme(d)
            | Error::NotFound(d)
            | Error::Incompatible(d)
            | Error::WouldBlock(d)
            | Error::TimedOut(d)
            | Error::Overwritten(d)
            | Error::Corrupt(d)
            | Error::NotAChannel(d)
            | Error::Version(d)
            | Error::Lease(d)
            | Error::Busy(d)
            | Error::Limit(d)
            | Error::NoMemory(d)
            | Error::NoSpace(d)
            | Error::PermissionDenied(d)
            | Error::System(d) => d,
        }
    }

    /// True for the two "nothing came in time" errors.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::TimedOut(_) | Error::WouldBlock(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.detail(), strerror(self.code()))
    }
}

impl std::error::Error for Error {}

unsafe fn cstr(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The fixed description of a `DMAQ_E*` code.
pub fn strerror(code: i32) -> String {
    unsafe { cstr(ffi::dmaq_strerror(code)) }
}

/// The version of the C library linked in ("0.1.0").
pub fn version() -> String {
    unsafe { cstr(ffi::dmaq_version()) }
}

fn empty_lease() -> ffi::dmaq_lease {
    ffi::dmaq_lease {
        data: ptr::null_mut(),
        len: 0,
        seq: 0,
        timestamp_ns: 0,
        publisher_id: 0,
        flags: 0,
        lost: 0,
        opaque_: [0; 4],
    }
}

#[inline]
fn check(rc: c_int) -> Result<c_int> {
    if rc < 0 {
        Err(Error::from_code(rc))
    } else {
        Ok(rc)
    }
}

#[inline]
fn timeout_ns(timeout: Option<Duration>) -> i64 {
    match timeout {
        None => -1,
        Some(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
    }
}

fn c_string(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidArgument(format!("{} '{}' contains a NUL byte", what, s.escape_debug())))
}

/// `uri` as a C string, with the statically linked transports registered
/// first (once per process), as the core's plugin loader would for a shared
/// libdmaq.
fn c_uri(uri: &str) -> Result<CString> {
    #[cfg(any(dmaq_static_tcp, dmaq_static_rdma))]
    {
        static REGISTER: std::sync::Once = std::sync::Once::new();
        // Cannot fail but for a table of another ABI, which the build rules out.
        REGISTER.call_once(|| unsafe {
            #[cfg(dmaq_static_tcp)]
            ffi::dmaq_transport_register(ffi::dmaq_tcp_transport());
            #[cfg(dmaq_static_rdma)]
            ffi::dmaq_transport_register(ffi::dmaq_rdma_transport());
        });
    }
    c_string(uri, "uri")
}

// ---- options ----------------------------------------------------------------

/// Channel kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Each message to exactly one subscriber.
    Queue,
    /// Each message to every subscriber.
    Broadcast,
}

/// What a full ring does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Publishers wait for space.
    Block,
    /// Broadcast only: publishers never wait; lapped subscribers lose messages.
    Overwrite,
}

/// Options for opening (and, if need be, creating) a channel. Fields left
/// unset take the existing channel's values, or the defaults on creation.
///
/// ```
/// let opts = dmaq::Options::broadcast().overwrite().capacity(1 << 20).max_message(4096);
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    raw: ffi::dmaq_options,
    shm_dir: Option<CString>,
    key: Option<std::result::Result<CString, ()>>,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// Accept whatever exists; create a broadcast/block channel otherwise.
    pub fn new() -> Options {
        let mut raw = ffi::dmaq_options {
            size: 0,
            kind: 0,
            policy: 0,
            flags: 0,
            capacity: 0,
            max_message: 0,
            mode: 0,
            start: 0,
            spin_ns: -1,
            shm_dir: ptr::null(),
            peer_timeout_ns: 0,
            key: ptr::null(),
        };
        unsafe { ffi::dmaq_options_init(&mut raw) };
        Options { raw, shm_dir: None, key: None }
    }
    /// A work queue: each message to exactly one subscriber.
    pub fn queue() -> Options {
        Options::new().kind(Kind::Queue)
    }
    /// A broadcast: each message to every subscriber.
    pub fn broadcast() -> Options {
        Options::new().kind(Kind::Broadcast)
    }
    /// The channel's kind.
    pub fn kind(mut self, kind: Kind) -> Options {
        self.raw.kind = match kind {
            Kind::Queue => ffi::DMAQ_KIND_QUEUE,
            Kind::Broadcast => ffi::DMAQ_KIND_BROADCAST,
        };
        self
    }
    /// Publishers wait for the slowest subscriber (the default).
    pub fn block(mut self) -> Options {
        self.raw.policy = ffi::DMAQ_POLICY_BLOCK;
        self
    }
    /// Publishers never wait; lapped subscribers get [`Error::Lost`].
    pub fn overwrite(mut self) -> Options {
        self.raw.policy = ffi::DMAQ_POLICY_OVERWRITE;
        self
    }
    /// Ring bytes: a power of two, at least 4096 (default 1 MiB).
    pub fn capacity(mut self, bytes: u64) -> Options {
        self.raw.capacity = bytes;
        self
    }
    /// The largest message (default capacity / 4).
    pub fn max_message(mut self, bytes: u64) -> Options {
        self.raw.max_message = bytes;
        self
    }
    /// File permission bits when creating (default 0600).
    pub fn mode(mut self, mode: u32) -> Options {
        self.raw.mode = mode;
        self
    }
    /// A new broadcast subscriber also gets the messages still in the ring.
    pub fn start_oldest(mut self) -> Options {
        self.raw.start = ffi::DMAQ_START_OLDEST;
        self
    }
    /// How long a wait spins before it sleeps (default 50 us; zero sleeps at once).
    pub fn spin(mut self, spin: Duration) -> Options {
        self.raw.spin_ns = i64::try_from(spin.as_nanos()).unwrap_or(i64::MAX);
        self
    }
    /// Fail with [`Error::NotFound`] instead of creating the channel.
    pub fn no_create(mut self) -> Options {
        self.raw.flags |= ffi::DMAQ_OPEN_NO_CREATE;
        self
    }
    /// Publishers: leave messages unstamped (their `timestamp_ns` is 0),
    /// which makes small sends cheaper where reading the clock is slow.
    pub fn no_timestamps(mut self) -> Options {
        self.raw.flags |= ffi::DMAQ_OPEN_NO_TIMESTAMPS;
        self
    }
    /// The directory holding `shm://` channel files (default `$DMAQ_SHM_DIR`, else /dev/shm).
    pub fn shm_dir(mut self, dir: &str) -> Options {
        self.shm_dir = CString::new(dir).ok();
        self
    }
    /// `tcp://`: this handle binds (listens at the URI's address and hosts
    /// the channel) instead of connecting to the host.
    pub fn bind(mut self) -> Options {
        self.raw.flags |= ffi::DMAQ_OPEN_BIND;
        self
    }
    /// `tcp://`: the channel's pre-shared key; peers that cannot prove they
    /// know it are refused ([`Error::PermissionDenied`]). A key with a NUL byte is
    /// refused at open.
    pub fn key(mut self, key: &str) -> Options {
        self.key = Some(CString::new(key).map_err(|_| ()));
        self
    }
    /// `tcp://`, with a [`key`](Options::key): encrypt payloads (ChaCha20-Poly1305).
    pub fn encrypt(mut self) -> Options {
        self.raw.flags |= ffi::DMAQ_OPEN_ENCRYPT;
        self
    }
    /// `tcp://`: compress large payloads with zstd.
    pub fn compress(mut self) -> Options {
        self.raw.flags |= ffi::DMAQ_OPEN_COMPRESS;
        self
    }
    /// `tcp://`: how long a silent peer is given before it counts as gone (default 5 s).
    pub fn peer_timeout(mut self, timeout: Duration) -> Options {
        self.raw.peer_timeout_ns = i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX);
        self
    }

    fn to_raw(&self) -> Result<ffi::dmaq_options> {
        let mut raw = self.raw;
        raw.shm_dir = self.shm_dir.as_ref().map_or(ptr::null(), |d| d.as_ptr());
        raw.key = match &self.key {
            None => ptr::null(),
            Some(Ok(k)) => k.as_ptr(),
            Some(Err(())) => return Err(Error::InvalidArgument("the key contains a NUL byte".into())),
        };
        Ok(raw)
    }
}

// ---- publishers ---------------------------------------------------------------

/// A publisher on a channel; closed on drop.
pub struct Publisher {
    raw: NonNull<ffi::dmaq_pub>,
    lease: ffi::dmaq_lease, // the one outstanding reservation's, filled by the C call in place
}

// The C header: a handle may be used by one thread at a time and move
// between threads between calls. Hence Send, and not Sync.
unsafe impl Send for Publisher {}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").field("id", &self.id()).finish()
    }
}

impl Publisher {
    /// Open a publisher on `uri` ("shm://NAME"), creating the channel from
    /// `opts` if it does not exist.
    pub fn open(uri: &str, opts: &Options) -> Result<Publisher> {
        let uri = c_uri(uri)?;
        let raw_opts = opts.to_raw()?;
        let mut out = ptr::null_mut();
        check(unsafe { ffi::dmaq_pub_open(uri.as_ptr(), &raw_opts, &mut out) })?;
        Ok(Publisher { raw: NonNull::new(out).expect("dmaq_pub_open returned 0 and no handle"), lease: empty_lease() })
    }

    /// This publisher's id, as subscribers see it in [`ReadLease::publisher_id`].
    pub fn id(&self) -> u32 {
        unsafe { ffi::dmaq_pub_id(self.raw.as_ptr()) }
    }

    /// Publish a copy of `data`, waiting up to `timeout` for space (`None`: forever).
    #[inline]
    pub fn send(&mut self, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        check(unsafe { ffi::dmaq_pub_send(self.raw.as_ptr(), data.as_ptr().cast(), data.len(), timeout_ns(timeout)) })
            .map(drop)
    }

    /// Reserve `len` bytes in the ring to write a message in place. The lease
    /// derefs to `&mut [u8]`; [`WriteLease::commit`] publishes it, dropping it
    /// uncommitted aborts it.
    #[inline]
    pub fn reserve(&mut self, len: usize, timeout: Option<Duration>) -> Result<WriteLease<'_>> {
        check(unsafe { ffi::dmaq_pub_reserve(self.raw.as_ptr(), len, &mut self.lease, timeout_ns(timeout)) })?;
        Ok(WriteLease { publisher: self, done: false })
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        unsafe { ffi::dmaq_pub_close(self.raw.as_ptr()) };
    }
}

/// Bytes reserved in the ring (from [`Publisher::reserve`]).
pub struct WriteLease<'a> {
    publisher: &'a mut Publisher,
    done: bool,
}

impl WriteLease<'_> {
    /// Publish the first `len` bytes (at most the reserved length).
    #[inline]
    pub fn commit(mut self, len: usize) -> Result<()> {
        self.done = true;
        let p = &mut *self.publisher;
        check(unsafe { ffi::dmaq_pub_commit(p.raw.as_ptr(), &mut p.lease, len) }).map(drop)
    }

    /// Give the reservation up; nobody sees it.
    #[inline]
    pub fn abort(mut self) -> Result<()> {
        self.done = true;
        let p = &mut *self.publisher;
        check(unsafe { ffi::dmaq_pub_abort(p.raw.as_ptr(), &mut p.lease) }).map(drop)
    }
}

impl fmt::Debug for WriteLease<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteLease").field("len", &self.publisher.lease.len).finish()
    }
}

impl Deref for WriteLease<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let l = &self.publisher.lease;
        unsafe { std::slice::from_raw_parts(l.data as *const u8, l.len as usize) }
    }
}

impl DerefMut for WriteLease<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let l = &self.publisher.lease;
        unsafe { std::slice::from_raw_parts_mut(l.data as *mut u8, l.len as usize) }
    }
}

impl Drop for WriteLease<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.done {
            let p = &mut *self.publisher;
            unsafe { ffi::dmaq_pub_abort(p.raw.as_ptr(), &mut p.lease) };
        }
    }
}

// ---- subscribers --------------------------------------------------------------

/// A subscriber on a channel; closed on drop.
pub struct Subscriber {
    raw: NonNull<ffi::dmaq_sub>,
    max_message: usize,
    lease: ffi::dmaq_lease, // the one outstanding read lease's
}

unsafe impl Send for Subscriber {}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber").field("max_message", &self.max_message).finish()
    }
}

impl Subscriber {
    /// Open a subscriber on `uri`, creating the channel from `opts` if it
    /// does not exist. A broadcast subscriber gets what is published after
    /// this returns (see [`Options::start_oldest`]).
    pub fn open(uri: &str, opts: &Options) -> Result<Subscriber> {
        let curi = c_uri(uri)?;
        let raw_opts = opts.to_raw()?;
        let mut out = ptr::null_mut();
        check(unsafe { ffi::dmaq_sub_open(curi.as_ptr(), &raw_opts, &mut out) })?;
        let mut sub = Subscriber {
            raw: NonNull::new(out).expect("dmaq_sub_open returned 0 and no handle"),
            max_message: 0,
            lease: empty_lease(),
        };
        sub.max_message = stat(uri)?.max_message as usize;
        Ok(sub)
    }

    /// The channel's largest message.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Copy the next message into `buf` and return its length. A message
    /// longer than `buf` stays unread: [`Error::MessageTooLarge`] says how long.
    #[inline]
    pub fn recv_into(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize> {
        let mut len = 0usize;
        let rc = unsafe {
            ffi::dmaq_sub_recv(self.raw.as_ptr(), buf.as_mut_ptr().cast(), buf.len(), &mut len, timeout_ns(timeout))
        };
        match check(rc) {
            Ok(_) => Ok(len),
            Err(Error::Lost { detail, .. }) => Err(Error::Lost { lost: len as u64, detail }),
            Err(Error::MessageTooLarge { detail, .. }) => Err(Error::MessageTooLarge { needed: Some(len), detail }),
            Err(e) => Err(e),
        }
    }

    /// The next message, copied into a new `Vec`.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.max_message];
        let n = self.recv_into(&mut buf, timeout)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// The next message in place, without a copy; released when the lease
    /// is dropped (or by [`ReadLease::release`], which reports
    /// [`Error::Overwritten`]).
    #[inline]
    pub fn peek(&mut self, timeout: Option<Duration>) -> Result<ReadLease<'_>> {
        let rc = unsafe { ffi::dmaq_sub_peek(self.raw.as_ptr(), &mut self.lease, timeout_ns(timeout)) };
        if rc == 0 {
            return Ok(ReadLease { subscriber: self, done: false });
        }
        match Error::from_code(rc) {
            Error::Lost { detail, .. } => Err(Error::Lost { lost: self.lease.lost, detail }),
            e => Err(e),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        unsafe { ffi::dmaq_sub_close(self.raw.as_ptr()) };
    }
}

/// A message read in place (from [`Subscriber::peek`]); derefs to `&[u8]`.
///
/// The lease borrows its subscriber, so the bytes cannot outlive it, nor be
/// read after the next peek:
///
/// ```compile_fail,E0499
/// # let mut sub = dmaq::Subscriber::open("shm://doc-borrow", &dmaq::Options::new()).unwrap();
/// let first = sub.peek(None).unwrap();
/// let second = sub.peek(None).unwrap(); // error: `sub` is still borrowed by `first`
/// println!("{}", first[0]);
/// ```
///
/// ```compile_fail,E0505
/// # let mut sub = dmaq::Subscriber::open("shm://doc-borrow", &dmaq::Options::new()).unwrap();
/// let msg = sub.peek(None).unwrap();
/// drop(sub); // error: cannot move out of `sub` while `msg` borrows it
/// println!("{}", msg[0]);
/// ```
pub struct ReadLease<'a> {
    subscriber: &'a mut Subscriber,
    done: bool,
}

impl ReadLease<'_> {
    /// The channel-wide sequence number.
    pub fn seq(&self) -> u64 {
        self.subscriber.lease.seq
    }
    /// CLOCK_REALTIME at commit, in nanoseconds.
    pub fn timestamp_ns(&self) -> u64 {
        self.subscriber.lease.timestamp_ns
    }
    /// The id of the publisher that committed it.
    pub fn publisher_id(&self) -> u32 {
        self.subscriber.lease.publisher_id
    }
    /// Queue: an earlier receiver died holding it.
    pub fn redelivered(&self) -> bool {
        self.subscriber.lease.flags & ffi::DMAQ_LEASE_REDELIVERED != 0
    }
    /// Release it, learning whether it was overwritten while held
    /// ([`Error::Overwritten`]: what was read must be discarded).
    #[inline]
    pub fn release(mut self) -> Result<()> {
        self.done = true;
        let s = &mut *self.subscriber;
        check(unsafe { ffi::dmaq_sub_release(s.raw.as_ptr(), &mut s.lease) }).map(drop)
    }
}

impl fmt::Debug for ReadLease<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.subscriber.lease;
        f.debug_struct("ReadLease").field("len", &l.len).field("seq", &l.seq).finish()
    }
}

impl Deref for ReadLease<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let l = &self.subscriber.lease;
        unsafe { std::slice::from_raw_parts(l.data as *const u8, l.len as usize) }
    }
}

impl Drop for ReadLease<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.done {
            let s = &mut *self.subscriber;
            unsafe { ffi::dmaq_sub_release(s.raw.as_ptr(), &mut s.lease) };
        }
    }
}

// ---- channels -------------------------------------------------------------------

/// One subscriber's figures (see [`stat`]).
#[derive(Clone, Debug)]
pub struct SubscriberStat {
    /// Messages delivered to it.
    pub received: u64,
    /// Messages it lost to overwriting.
    pub lost: u64,
    /// Messages published it has not read (a queue: messages waiting).
    pub lag: u64,
    /// Its process.
    pub pid: i32,
    /// Whether that process is alive.
    pub alive: bool,
}

/// A channel's figures (see [`stat`]).
#[derive(Clone, Debug)]
pub struct Stat {
    /// Queue or broadcast.
    pub kind: Kind,
    /// Block or overwrite.
    pub policy: Policy,
    /// Ring bytes.
    pub capacity: u64,
    /// The largest message.
    pub max_message: u64,
    /// Messages committed since creation.
    pub published: u64,
    /// Publishers attached now.
    pub publishers: u32,
    /// Subscribers attached now.
    pub subscribers: u32,
    /// No live process is attached.
    pub stale: bool,
    /// Every attached subscriber.
    pub subscriber_stats: Vec<SubscriberStat>,
}

/// Describe the channel at `uri`.
pub fn stat(uri: &str) -> Result<Stat> {
    let uri = c_uri(uri)?;
    let mut st = ffi::dmaq_stat { size: std::mem::size_of::<ffi::dmaq_stat>() as u32, ..Default::default() };
    let mut subs = vec![ffi::dmaq_sub_stat::default(); 64];
    let n = check(unsafe { ffi::dmaq_channel_stat(uri.as_ptr(), &mut st, subs.as_mut_ptr(), subs.len()) })? as usize;
    subs.truncate(n.min(64));
    Ok(Stat {
        kind: if st.kind == ffi::DMAQ_KIND_QUEUE { Kind::Queue } else { Kind::Broadcast },
        policy: if st.policy == ffi::DMAQ_POLICY_OVERWRITE { Policy::Overwrite } else { Policy::Block },
        capacity: st.capacity,
        max_message: st.max_message,
        published: st.published,
        publishers: st.publishers,
        subscribers: st.subscribers,
        stale: st.flags & ffi::DMAQ_STAT_STALE != 0,
        subscriber_stats: subs
            .iter()
            .map(|s| SubscriberStat { received: s.received, lost: s.lost, lag: s.lag, pid: s.pid, alive: s.alive != 0 })
            .collect(),
    })
}

/// Remove the channel's name; open handles keep working.
pub fn unlink(uri: &str) -> Result<()> {
    let uri = c_uri(uri)?;
    check(unsafe { ffi::dmaq_channel_unlink(uri.as_ptr()) }).map(drop)
}

/// Remove the stale channels (no live process attached) of `shm_dir`
/// (`None`: `$DMAQ_SHM_DIR`, else /dev/shm); returns how many.
pub fn gc(shm_dir: Option<&str>) -> Result<usize> {
    let dir = shm_dir.map(|d| c_string(d, "directory")).transpose()?;
    check(unsafe { ffi::dmaq_channel_gc(dir.as_ref().map_or(ptr::null(), |d| d.as_ptr())) }).map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_its_own_variant() {
        let mut seen = std::collections::HashSet::new();
        for code in -19..=-1 {
            let e = Error::from_code(code);
            assert_eq!(e.code(), code, "{:?}", e);
            assert!(!matches!(e, Error::Unknown { .. }), "code {} has a variant", code);
            assert!(seen.insert(std::mem::discriminant(&e)), "code {} shares a variant", code);
            assert!(!e.detail().is_empty());
        }
        assert!(matches!(Error::from_code(-1000), Error::Unknown { code: -1000, .. }));
    }
}
