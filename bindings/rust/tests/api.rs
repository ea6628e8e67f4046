//! Every call of the safe API and every error it maps.
mod common;
use common::{fresh_uri, Cleanup};
use dmaq::{Error, Kind, Options, Policy, Publisher, Subscriber};
use std::time::{Duration, Instant};

const SHORT: Option<Duration> = Some(Duration::from_millis(50));
const SECOND: Option<Duration> = Some(Duration::from_secs(1));

fn pair(opts: &Options) -> (Publisher, Subscriber, Cleanup) {
    let uri = fresh_uri("api");
    let sub = Subscriber::open(&uri, opts).unwrap();
    let publisher = Publisher::open(&uri, opts).unwrap();
    (publisher, sub, Cleanup(uri))
}

#[test]
fn version_matches_the_crate() {
    assert_eq!(dmaq::version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn send_recv_and_recv_into() {
    let (mut p, mut s, _c) = pair(&Options::broadcast().capacity(1 << 16).max_message(1024));
    assert_eq!(s.max_message(), 1024);
    p.send(b"hello", None).unwrap();
    p.send(b"", None).unwrap();
    assert_eq!(s.recv(SECOND).unwrap(), b"hello");
    assert_eq!(s.recv(SECOND).unwrap(), b"");
    p.send(&[7u8; 100], None).unwrap();
    let mut small = [0u8; 10];
    match s.recv_into(&mut small, SECOND) {
        Err(Error::MessageTooLarge { needed, .. }) => assert_eq!(needed, Some(100)),
        other => panic!("{:?}", other),
    }
    let mut buf = [0u8; 200];
    assert_eq!(s.recv_into(&mut buf, SECOND).unwrap(), 100, "the message stayed unread");
    assert_eq!(&buf[..100], &[7u8; 100][..]);
}

#[test]
fn a_publisher_without_timestamps() {
    let (mut p, mut s, c) = pair(&Options::broadcast());
    let mut plain = Publisher::open(&c.0, &Options::broadcast().no_timestamps()).unwrap();
    plain.send(b"plain", None).unwrap();
    p.send(b"stamped", None).unwrap();
    let r = s.peek(SECOND).unwrap();
    assert_eq!((&*r, r.publisher_id(), r.timestamp_ns()), (&b"plain"[..], plain.id(), 0));
    r.release().unwrap();
    let r = s.peek(SECOND).unwrap();
    assert!(r.timestamp_ns() > 0);
}

#[test]
fn zero_copy_write_and_read() {
    let (mut p, mut s, _c) = pair(&Options::broadcast());
    let mut w = p.reserve(8, None).unwrap();
    assert_eq!(w.len(), 8);
    w.copy_from_slice(b"abcdefgh");
    w.commit(5).unwrap();
    let r = s.peek(SECOND).unwrap();
    assert_eq!(&*r, b"abcde");
    assert_eq!(r.publisher_id(), p.id());
    assert!(r.timestamp_ns() > 0);
    assert!(!r.redelivered());
    let seq = r.seq();
    r.release().unwrap();
    p.send(b"next", None).unwrap();
    let r = s.peek(SECOND).unwrap();
    assert_eq!(r.seq(), seq + 1);
}

#[test]
fn a_dropped_reservation_is_aborted() {
    let (mut p, mut s, _c) = pair(&Options::broadcast());
    {
        let mut w = p.reserve(4, None).unwrap();
        w.copy_from_slice(b"lost");
    }
    p.reserve(1, None).unwrap().abort().unwrap();
    p.send(b"kept", None).unwrap();
    assert_eq!(s.recv(SECOND).unwrap(), b"kept", "nobody saw the aborted ones");
    let w = p.reserve(4, None).unwrap();
    assert!(matches!(w.commit(5), Err(Error::MessageTooLarge { .. })));
}

#[test]
fn a_dropped_read_lease_is_released() {
    let (mut p, mut s, _c) = pair(&Options::queue());
    p.send(b"one", None).unwrap();
    p.send(b"two", None).unwrap();
    {
        let r = s.peek(SECOND).unwrap();
        assert_eq!(&*r, b"one");
    }
    assert_eq!(s.recv(SECOND).unwrap(), b"two");
}

#[test]
fn timeouts() {
    let (mut p, mut s, _c) = pair(&Options::broadcast().capacity(4096).max_message(1000));
    let t0 = Instant::now();
    let e = s.recv(SHORT).unwrap_err();
    assert!(matches!(e, Error::TimedOut(_)), "{:?}", e);
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert!(e.is_timeout());
    assert_eq!(e.code(), -7);
    assert!(matches!(s.peek(Some(Duration::ZERO)), Err(Error::WouldBlock(_))));
    while p.send(&[0u8; 1000], Some(Duration::ZERO)).is_ok() {}
    assert!(p.send(&[0u8; 1000], SHORT).unwrap_err().is_timeout());
    assert!(p.reserve(1000, SHORT).unwrap_err().is_timeout());
}

#[test]
fn a_lapped_subscriber_learns_how_many_it_lost() {
    let (mut p, mut s, _c) = pair(&Options::broadcast().overwrite().capacity(4096).max_message(256));
    for i in 0..200u8 {
        p.send(&[i; 64], None).unwrap();
    }
    let lost = match s.recv(SECOND) {
        Err(Error::Lost { lost, .. }) => lost,
        other => panic!("{:?}", other),
    };
    assert!(lost > 0);
    let mut received = 0;
    while s.recv(Some(Duration::ZERO)).is_ok() {
        received += 1;
    }
    assert_eq!(lost + received, 200);
    for i in 0..200u8 {
        p.send(&[i; 64], None).unwrap();
    }
    assert!(matches!(s.peek(SECOND), Err(Error::Lost { lost, .. }) if lost > 0));
}

#[test]
fn a_lease_overwritten_while_held() {
    let (mut p, mut s, _c) = pair(&Options::broadcast().overwrite().capacity(4096).max_message(256));
    p.send(b"first", None).unwrap();
    let r = s.peek(SECOND).unwrap();
    // The lease borrows the subscriber, not the publisher: keep publishing.
    for i in 0..200u8 {
        p.send(&[i; 64], None).unwrap();
    }
    assert!(matches!(r.release(), Err(Error::Overwritten(_))));
}

#[test]
fn errors_carry_the_library_detail() {
    let e = Publisher::open("shm://", &Options::new()).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)));
    assert!(e.detail().contains("empty"), "{}", e);
    let e = Subscriber::open("carrier-pigeon://x", &Options::new()).unwrap_err();
    assert!(matches!(e, Error::Scheme(_)));
    assert!(e.to_string().contains("carrier-pigeon"));
    let uri = fresh_uri("err");
    assert!(matches!(Subscriber::open(&uri, &Options::new().no_create()), Err(Error::NotFound(_))));
    assert!(matches!(dmaq::stat(&uri), Err(Error::NotFound(_))));
    assert!(matches!(dmaq::unlink(&uri), Err(Error::NotFound(_))));
    let _p = Publisher::open(&uri, &Options::queue()).unwrap();
    let _c = Cleanup(uri.clone());
    let e = Subscriber::open(&uri, &Options::broadcast()).unwrap_err();
    assert!(matches!(e, Error::Incompatible(_)));
    assert!(matches!(Publisher::open(&fresh_uri("err"), &Options::new().capacity(1000)), Err(Error::InvalidArgument(_))));
    assert!(matches!(Publisher::open(&fresh_uri("err"), &Options::queue().overwrite()), Err(Error::InvalidArgument(_))));
    assert!(matches!(Publisher::open("shm://nul\0name", &Options::new()), Err(Error::InvalidArgument(_))));
    let mut p = Publisher::open(&uri, &Options::new()).unwrap();
    assert!(matches!(p.send(&vec![0u8; 1 << 20], None), Err(Error::MessageTooLarge { .. })));
}

#[test]
fn every_code_has_its_own_text() {
    for code in -19..=-1 {
        assert_ne!(dmaq::strerror(code), dmaq::strerror(-1000), "code {} has its own text", code);
    }
}

#[test]
fn too_many_subscribers() {
    let uri = fresh_uri("limit");
    let _c = Cleanup(uri.clone());
    let subs: Vec<_> = (0..64).map(|_| Subscriber::open(&uri, &Options::new()).unwrap()).collect();
    assert!(matches!(Subscriber::open(&uri, &Options::new()), Err(Error::Limit(_))));
    drop(subs);
}

#[test]
fn stat_and_gc() {
    let dir = std::env::temp_dir().join(format!("rust-gc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let uri = format!("shm://{}/chan", d);
    {
        let mut p = Publisher::open(&uri, &Options::broadcast().capacity(1 << 16)).unwrap();
        let _s = Subscriber::open(&uri, &Options::new()).unwrap();
        p.send(b"x", None).unwrap();
        let st = dmaq::stat(&uri).unwrap();
        assert_eq!((st.kind, st.policy, st.capacity), (Kind::Broadcast, Policy::Block, 1 << 16));
        assert_eq!((st.publishers, st.subscribers, st.published), (1, 1, 1));
        assert_eq!(st.subscriber_stats[0].pid, std::process::id() as i32);
        assert!(st.subscriber_stats[0].alive);
        assert_eq!(st.subscriber_stats[0].lag, 1);
        assert!(!st.stale);
        assert_eq!(dmaq::gc(Some(d)).unwrap(), 0, "a channel in use is not stale");
    }
    assert!(dmaq::stat(&uri).unwrap().stale);
    assert_eq!(dmaq::gc(Some(d)).unwrap(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "tcp")]
#[test]
fn tcp_keys_encryption_and_compression() {
    let opts = Options::broadcast().capacity(1 << 20).max_message(64 << 10).key("sesame").encrypt().compress();
    let (uri, mut host) = common::tcp_host(&fresh_uri("tcp"), &opts);
    match Subscriber::open(&uri, &Options::new().key("open up")) {
        Err(Error::PermissionDenied(d)) => assert!(!d.is_empty()),
        other => panic!("a wrong key was not refused: {:?}", other),
    }
    assert!(matches!(Subscriber::open(&uri, &Options::new()), Err(Error::PermissionDenied(_))), "no key");
    assert!(matches!(Subscriber::open(&uri, &Options::new().key("a\0b")), Err(Error::InvalidArgument(_))));
    let mut sub = Subscriber::open(&uri, &Options::new().key("sesame").peer_timeout(Duration::from_secs(2))).unwrap();
    let mut remote = Publisher::open(&uri, &Options::new().key("sesame")).unwrap();
    // Compressible and not, each from the host and from a connected publisher.
    let big: Vec<u8> = (0..60_000u32).map(|i| (i / 100) as u8).collect();
    let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    host.send(&big, None).unwrap();
    assert_eq!(sub.recv(Some(Duration::from_secs(10))).unwrap(), big);
    remote.send(&noise, None).unwrap();
    assert_eq!(sub.recv(Some(Duration::from_secs(10))).unwrap(), noise);
    assert_eq!(dmaq::stat(&uri).unwrap().subscribers, 1, "stat asks the host");
}

#[cfg(feature = "tcp")]
#[test]
fn tcp_nothing_listening_is_not_found() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    match Subscriber::open(&format!("tcp://127.0.0.1:{}/none", port), &Options::new()) {
        Err(Error::NotFound(d)) => assert!(d.contains("127.0.0.1"), "{}", d),
        other => panic!("{:?}", other),
    }
}

#[cfg(not(feature = "tcp"))]
#[test]
fn tcp_without_the_feature_is_an_unknown_scheme() {
    match Subscriber::open("tcp://127.0.0.1:9/none", &Options::new()) {
        Err(Error::Scheme(d)) => assert!(d.contains("libdmaq-tcp.so"), "{}", d),
        other => panic!("{:?}", other),
    }
}

/// The rdma:// transport is linked in: on a machine without an RDMA device
/// (this one; the VM runs the real rdma:// cases) it says so, where a crate
/// without it would not know the scheme at all.
#[cfg(feature = "rdma")]
#[test]
fn rdma_is_linked_and_says_why_it_cannot_open_without_a_device() {
    let has_device = std::fs::read_dir("/sys/class/infiniband").map_or(false, |mut d| d.next().is_some());
    if has_device || std::env::var_os("RDMA_VM_IP").is_some() {
        return; // a device: tests/cross.rs's rdma:// cases are the test here
    }
    match Publisher::open("rdma://127.0.0.1:1/rust-no-device", &Options::new()) {
        Err(Error::Scheme(d)) => assert!(d.contains("no usable RDMA device"), "{}", d),
        other => panic!("rdma:// opened without a device, or failed another way: {:?}", other.map(|_| ())),
    }
}
