//! Helpers shared by the integration tests: unique channel names and the
//! checksummed message format of the C peers (tests/payload.h).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

pub fn fresh_uri(what: &str) -> String {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    format!("shm://rust-{}-{}-{}", what, std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// Binds a tcp:// channel named after `shm_uri` on a free loopback port;
/// returns its URI and the hosting publisher.
#[cfg(feature = "tcp")]
pub fn tcp_host(shm_uri: &str, opts: &dmaq::Options) -> (String, dmaq::Publisher) {
    net_host("tcp", "127.0.0.1", shm_uri, opts)
}

/// As tcp_host, for `scheme` at the address `ip` (rdma:// at an RDMA
/// device's: ports free for TCP are as good a guess as any there).
pub fn net_host(scheme: &str, ip: &str, shm_uri: &str, opts: &dmaq::Options) -> (String, dmaq::Publisher) {
    (0..20)
        .find_map(|_| {
            let port = std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
            let uri = format!("{}://{}:{}/{}", scheme, ip, port, shm_uri.trim_start_matches("shm://"));
            match dmaq::Publisher::open(&uri, &opts.clone().bind()) {
                Ok(host) => Some((uri, host)),
                // Taken, between asking and binding, as the local end of
                // another test's connection: try another.
                Err(dmaq::Error::System(e)) if e.contains("in use") => None,
                Err(e) => panic!("binding {}: {}", uri, e),
            }
        })
        .expect("no free port in 20 tries")
}

/// Unlinks the channel when dropped, so a failing test leaves nothing behind.
pub struct Cleanup(pub String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = dmaq::unlink(&self.0);
    }
}

const P1: u64 = 0x9E3779B185EBCA87;
const P2: u64 = 0xC2B2AE3D27D4EB4F;
const P3: u64 = 0x165667B19E3779F9;
const P4: u64 = 0x85EBCA77C2B2AE63;
const P5: u64 = 0x27D4EB2F165667C5;

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1)
}

fn merge(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

fn u64_at(d: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(d[i..i + 8].try_into().unwrap())
}

/// XXH64, as tests/payload.h uses it.
pub fn xxh64(d: &[u8], seed: u64) -> u64 {
    let n = d.len();
    let mut i = 0;
    let mut h;
    if n >= 32 {
        let mut v = [seed.wrapping_add(P1).wrapping_add(P2), seed.wrapping_add(P2), seed, seed.wrapping_sub(P1)];
        while i + 32 <= n {
            for (k, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, u64_at(d, i + 8 * k));
            }
            i += 32;
        }
        h = v[0].rotate_left(1).wrapping_add(v[1].rotate_left(7)).wrapping_add(v[2].rotate_left(12)).wrapping_add(v[3].rotate_left(18));
        for x in v {
            h = merge(h, x);
        }
    } else {
        h = seed.wrapping_add(P5);
    }
    h = h.wrapping_add(n as u64);
    while i + 8 <= n {
        h ^= round(0, u64_at(d, i));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        i += 8;
    }
    if i + 4 <= n {
        h ^= (u32::from_le_bytes(d[i..i + 4].try_into().unwrap()) as u64).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        i += 4;
    }
    while i < n {
        h ^= (d[i] as u64).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
        i += 1;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

pub const HEAD: usize = 16;

/// Fill `out` (>= 16 bytes) with a sealed message.
pub fn seal(out: &mut [u8], key: u32, index: u32, rng: &mut u64) {
    for b in out[HEAD..].iter_mut() {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *b = *rng as u8;
    }
    let h = xxh64(&out[HEAD..], (key as u64) << 32 | index as u64);
    out[0..4].copy_from_slice(&key.to_le_bytes());
    out[4..8].copy_from_slice(&index.to_le_bytes());
    out[8..16].copy_from_slice(&h.to_le_bytes());
}

/// Some((key, index)) of an intact message, None for an intact short one
/// (the C peer's pattern), Err for a corrupt one.
pub fn check(m: &[u8]) -> Result<Option<(u32, u32)>, String> {
    if m.len() < HEAD {
        let ok = m.iter().enumerate().all(|(i, &b)| b == (m.len() * 31 + i) as u8);
        return if ok { Ok(None) } else { Err(format!("short message {:?} is corrupt", m)) };
    }
    let key = u32::from_le_bytes(m[0..4].try_into().unwrap());
    let index = u32::from_le_bytes(m[4..8].try_into().unwrap());
    let h = u64::from_le_bytes(m[8..16].try_into().unwrap());
    if xxh64(&m[HEAD..], (key as u64) << 32 | index as u64) != h {
        return Err(format!("message {}/{} of {} bytes is corrupt", key, index, m.len()));
    }
    Ok(Some((key, index)))
}
