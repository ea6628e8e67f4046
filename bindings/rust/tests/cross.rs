//! Rust and C peers on one channel, in separate processes, on every kind: a
//! Rust publisher with C subscribers and a C publisher with Rust
//! subscribers, every message checksummed and checked on arrival; over
//! shm:// and again over tcp:// and rdma:// (this process binding the
//! channel, the peers connecting). The rdma:// cases are ignored here:
//! they need an RDMA device, and tests/rdma-guest.sh runs them (with
//! `--ignored`) inside the Soft-RoCE VM, at $RDMA_VM_IP.
//!
//! The Rust peer is this test binary run again with DMAQ_RUST_PEER set
//! (see `rust_peer`); the C peer is tests/peer.c's dmaq-test-peer, from
//! DMAQ_TEST_PEER or the repository's build/ directory.
mod common;
use common::{check, fresh_uri, seal, Cleanup};
use dmaq::{Error, Options, Publisher, Subscriber};
use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const COUNT: usize = 5000;
const SUBSCRIBERS: usize = 2;
const WAIT: Option<Duration> = Some(Duration::from_secs(30));

fn c_peer() -> String {
    std::env::var("DMAQ_TEST_PEER")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../build/tests/dmaq-test-peer").into())
}

fn spawn(lang: &str, args: &[String]) -> Child {
    if lang == "c" {
        Command::new(c_peer()).args(args).spawn().expect("the C peer (build it, or set DMAQ_TEST_PEER)")
    } else {
        Command::new(std::env::current_exe().unwrap())
            .args(["rust_peer", "--exact", "--nocapture", "--test-threads", "1"])
            .env("DMAQ_RUST_PEER", args.join("\u{1f}"))
            .spawn()
            .unwrap()
    }
}

/// The Rust peer: `pub URI COUNT KEY` or `sub URI EXPECT OUTFILE`, as the C one.
#[test]
fn rust_peer() {
    let args = match std::env::var("DMAQ_RUST_PEER") {
        Ok(args) => args,
        Err(_) => return, // not a peer: the real tests spawn this one
    };
    let args: Vec<&str> = args.split('\u{1f}').collect();
    match args[0] {
        "pub" => publish(args[1], args[2].parse().unwrap(), args[3].parse().unwrap()),
        _ => subscribe(args[1], args[2].parse().unwrap(), args[3]),
    }
}

fn publish(uri: &str, count: u32, key: u32) {
    let mut p = Publisher::open(uri, &Options::new().no_create()).unwrap();
    let longest = dmaq::stat(uri).unwrap().max_message as usize;
    let mut rng = 0x9e3779b97f4a7c15u64 ^ key as u64;
    let mut buf = vec![0u8; longest];
    for i in 0..count {
        let len = if i % 50 == 49 { longest } else { 16 + (i as usize * 7919) % 200 };
        if i % 2 == 0 {
            let mut w = p.reserve(len, WAIT).unwrap();
            seal(&mut w, key, i, &mut rng);
            w.commit(len).unwrap();
        } else {
            seal(&mut buf[..len], key, i, &mut rng);
            p.send(&buf[..len], WAIT).unwrap();
        }
    }
}

fn subscribe(uri: &str, expect: u64, out: &str) {
    let mut s = Subscriber::open(uri, &Options::new().no_create()).unwrap();
    let queue = dmaq::stat(uri).unwrap().kind == dmaq::Kind::Queue;
    let (mut received, mut lost, mut bad, mut order) = (0u64, 0u64, 0u64, 0u64);
    let mut last: HashMap<u32, u32> = HashMap::new();
    let mut buf = vec![0u8; s.max_message()];
    let mut n = 0u64;
    while queue || received + lost < expect {
        n += 1;
        let verdict = if n % 2 == 0 {
            match s.peek(WAIT) {
                Ok(lease) => {
                    if queue && &*lease == b"DMAQSTOP" {
                        break;
                    }
                    let v = check(&lease);
                    match lease.release() {
                        Err(Error::Overwritten(_)) => {
                            lost += 1; // what was read may be torn
                            continue;
                        }
                        r => r.unwrap(),
                    }
                    v
                }
                Err(Error::Lost { lost: l, .. }) => {
                    lost += l;
                    continue;
                }
                Err(e) => panic!("peek: {}", e),
            }
        } else {
            match s.recv_into(&mut buf, WAIT) {
                Ok(len) => {
                    if queue && &buf[..len] == b"DMAQSTOP" {
                        break;
                    }
                    check(&buf[..len])
                }
                Err(Error::Lost { lost: l, .. }) => {
                    lost += l;
                    continue;
                }
                Err(e) => panic!("recv: {}", e),
            }
        };
        received += 1;
        match verdict {
            Err(e) => {
                eprintln!("rust peer: {}", e);
                bad += 1;
            }
            Ok(Some((key, index))) => {
                if last.get(&key).map_or(false, |&l| index <= l) {
                    order += 1;
                }
                last.insert(key, index);
            }
            Ok(None) => {}
        }
    }
    std::fs::write(out, format!("received={} lost={} bad={} order={}\n", received, lost, bad, order)).unwrap();
}

#[derive(Clone, Copy, PartialEq)]
#[allow(dead_code)] // without the tcp or rdma feature
enum Scheme {
    Shm,
    Tcp,
    Rdma,
}

fn run_case(opts: Options, queue: bool, overwrite: bool, pub_lang: &str, sub_lang: &str, scheme: Scheme) {
    let shm_uri = fresh_uri("cross");
    let _c = Cleanup(shm_uri.clone());
    // An overwriting ring holds the whole stream: a fast publisher could
    // otherwise lap a subscriber before it reads anything at all.
    let capacity = if overwrite { 1 << 21 } else { 1 << 16 };
    let opts = opts.capacity(capacity).max_message(2048);
    // Over tcp:// and rdma:// this process hosts the channel for as long as the case runs.
    let (uri, mut host) = match scheme {
        Scheme::Shm => {
            drop(Publisher::open(&shm_uri, &opts).unwrap());
            (shm_uri.clone(), None)
        }
        #[cfg(feature = "tcp")]
        Scheme::Tcp => {
            let (uri, host) = common::tcp_host(&shm_uri, &opts);
            (uri, Some(host))
        }
        Scheme::Rdma => {
            let ip = std::env::var("RDMA_VM_IP").expect("rdma:// cases need an RDMA device's address in RDMA_VM_IP");
            let (uri, host) = common::net_host("rdma", &ip, &shm_uri, &opts);
            (uri, Some(host))
        }
        #[cfg(not(feature = "tcp"))]
        Scheme::Tcp => unreachable!("tcp:// cases need the tcp feature"),
    };
    let dir = std::env::temp_dir().join(format!("rust-cross-{}-{}", std::process::id(), uri.rsplit('-').next().unwrap()));
    std::fs::create_dir_all(&dir).unwrap();
    let outs: Vec<String> = (0..SUBSCRIBERS).map(|i| dir.join(format!("sub{}", i)).to_str().unwrap().into()).collect();
    let mut subs: Vec<Child> =
        outs.iter().map(|o| spawn(sub_lang, &["sub".into(), uri.clone(), COUNT.to_string(), o.clone()])).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dmaq::stat(&uri).unwrap().subscribers < SUBSCRIBERS as u32 {
        assert!(Instant::now() < deadline, "subscribers did not attach");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = spawn(pub_lang, &["pub".into(), uri.clone(), COUNT.to_string(), "1".into()]).wait().unwrap();
    assert!(status.success(), "{} publisher: {}", pub_lang, status);
    if queue {
        let mut opened = None;
        let stopper = match host.as_mut() {
            Some(h) => h,
            None => opened.insert(Publisher::open(&uri, &Options::new()).unwrap()),
        };
        for _ in 0..SUBSCRIBERS {
            stopper.send(b"DMAQSTOP", None).unwrap();
        }
    }
    for s in subs.iter_mut() {
        let status = s.wait().unwrap();
        assert!(status.success(), "{} subscriber: {}", sub_lang, status);
    }
    let results: Vec<HashMap<String, u64>> = outs
        .iter()
        .map(|o| {
            std::fs::read_to_string(o)
                .unwrap()
                .split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.parse().unwrap())
                })
                .collect()
        })
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    for r in &results {
        assert_eq!(r["bad"], 0, "corrupt messages: {:?}", results);
        assert_eq!(r["order"], 0, "out of order: {:?}", results);
    }
    if queue {
        assert_eq!(results.iter().map(|r| r["received"]).sum::<u64>(), COUNT as u64, "each once: {:?}", results);
    } else {
        for r in &results {
            assert_eq!(r["received"] + r["lost"], COUNT as u64, "all accounted for: {:?}", results);
            assert!(r["received"] > 0, "messages arrived: {:?}", results);
            if !overwrite {
                assert_eq!(r["lost"], 0, "block loses nothing: {:?}", results);
            }
        }
    }
}

macro_rules! cases {
    ($($name:ident: $opts:expr, $queue:expr, $overwrite:expr, $pub_lang:expr, $sub_lang:expr;)*) => {
        mod shm {
            use super::*;
            $(#[test] fn $name() { run_case($opts, $queue, $overwrite, $pub_lang, $sub_lang, Scheme::Shm); })*
        }
        #[cfg(feature = "tcp")]
        mod tcp {
            use super::*;
            $(#[test] fn $name() { run_case($opts, $queue, $overwrite, $pub_lang, $sub_lang, Scheme::Tcp); })*
        }
        #[cfg(feature = "rdma")]
        mod rdma {
            use super::*;
            $(#[test]
              #[ignore = "needs an RDMA device: tests/rdma-guest.sh runs it in the Soft-RoCE VM"]
              fn $name() { run_case($opts, $queue, $overwrite, $pub_lang, $sub_lang, Scheme::Rdma); })*
        }
    };
}

cases! {
    queue_rust_publisher_c_subscribers: Options::queue(), true, false, "rust", "c";
    queue_c_publisher_rust_subscribers: Options::queue(), true, false, "c", "rust";
    broadcast_block_rust_publisher_c_subscribers: Options::broadcast().block(), false, false, "rust", "c";
    broadcast_block_c_publisher_rust_subscribers: Options::broadcast().block(), false, false, "c", "rust";
    broadcast_overwrite_rust_publisher_c_subscribers: Options::broadcast().overwrite(), false, true, "rust", "c";
    broadcast_overwrite_c_publisher_rust_subscribers: Options::broadcast().overwrite(), false, true, "c", "rust";
}
