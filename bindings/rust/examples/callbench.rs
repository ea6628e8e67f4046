//! What the zero-copy calls cost from Rust against the same calls from C
//! (dmaq-call-bench, bench/call_overhead.c): 64-byte messages, one process
//! each, a ring nothing waits on. This machine's speed drifts by tens of
//! percent within a minute, so short C and Rust runs alternate and the
//! figure is the median of each adjacent pair's ratio. Prints Markdown.
//!
//!     cargo run --release --example callbench -- PATH/TO/dmaq-call-bench [MESSAGES] [PAIRS]
use std::process::Command;
use std::time::Instant;

const ROUND: usize = 1000;
const SIZE: usize = 64;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn c_rates(c_bench: &str, n: usize) -> (f64, f64) {
    let out = Command::new(c_bench).arg(n.to_string()).output().expect("running dmaq-call-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = |name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).expect("its output")
    };
    (rate("reserve+commit "), rate("peek+release "))
}

/// A publisher and a subscriber driven through `dmaq::ffi` alone.
struct RawPair {
    publisher: *mut dmaq::ffi::dmaq_pub,
    subscriber: *mut dmaq::ffi::dmaq_sub,
}

impl RawPair {
    fn open(uri: &str) -> RawPair {
        use dmaq::ffi::*;
        let c_uri = std::ffi::CString::new(uri).unwrap();
        let mut opts = std::mem::MaybeUninit::<dmaq_options>::uninit();
        let (mut publisher, mut subscriber) = (std::ptr::null_mut(), std::ptr::null_mut());
        unsafe {
            dmaq_options_init(opts.as_mut_ptr());
            let mut opts = opts.assume_init();
            opts.capacity = 1 << 20;
            assert_eq!(dmaq_pub_open(c_uri.as_ptr(), &opts, &mut publisher), 0);
            assert_eq!(dmaq_sub_open(c_uri.as_ptr(), &opts, &mut subscriber), 0);
        }
        RawPair { publisher, subscriber }
    }

    fn send(&mut self, msg: &[u8]) {
        assert_eq!(unsafe { dmaq::ffi::dmaq_pub_send(self.publisher, msg.as_ptr().cast(), msg.len(), -1) }, 0);
    }

    fn peek_release(&mut self) -> u8 {
        let mut lease = std::mem::MaybeUninit::<dmaq::ffi::dmaq_lease>::uninit();
        unsafe {
            assert!(dmaq::ffi::dmaq_sub_peek(self.subscriber, lease.as_mut_ptr(), -1) >= 0);
            let first = *(lease.assume_init_ref().data as *const u8);
            assert!(dmaq::ffi::dmaq_sub_release(self.subscriber, lease.as_mut_ptr()) >= 0);
            first
        }
    }
}

impl Drop for RawPair {
    fn drop(&mut self) {
        unsafe {
            dmaq::ffi::dmaq_pub_close(self.publisher);
            dmaq::ffi::dmaq_sub_close(self.subscriber);
        }
    }
}

fn main() -> Result<(), dmaq::Error> {
    let args: Vec<String> = std::env::args().collect();
    let c_bench = args.get(1).expect("usage: callbench PATH/TO/dmaq-call-bench [MESSAGES] [PAIRS]");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let pairs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(61);
    let uri = format!("shm://rust-callbench-{}", std::process::id());
    let mut publisher = dmaq::Publisher::open(&uri, &dmaq::Options::broadcast().capacity(1 << 20))?;
    let mut sub = dmaq::Subscriber::open(&uri, &dmaq::Options::new())?;
    let msg = [1u8; SIZE];
    let raw_uri = format!("{}-raw", uri);
    let mut raw = RawPair::open(&raw_uri);
    let mut sink = 0u64;
    let (mut rust_w, mut rust_r, mut c_w, mut c_r, mut ratio_w, mut ratio_r, mut raw_r) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..pairs {
        let (cw, cr) = c_rates(c_bench, n);
        let (mut t_pub, mut t_sub) = (0f64, 0f64);
        for _ in 0..n / ROUND {
            let t0 = Instant::now();
            for _ in 0..ROUND {
                let mut lease = publisher.reserve(SIZE, None)?;
                lease.copy_from_slice(&msg);
                lease.commit(SIZE)?;
            }
            let t1 = Instant::now();
            for _ in 0..ROUND {
                let lease = sub.peek(None)?;
                sink += lease[0] as u64;
            }
            t_pub += (t1 - t0).as_secs_f64();
            t_sub += t1.elapsed().as_secs_f64();
        }
        // The same reads through the raw C calls, in this process: what the
        // safe layer itself costs, apart from any difference between programs.
        let mut t_raw = 0f64;
        for _ in 0..n / ROUND {
            for _ in 0..ROUND {
                raw.send(&msg);
            }
            let t0 = Instant::now();
            for _ in 0..ROUND {
                sink += raw.peek_release() as u64;
            }
            t_raw += t0.elapsed().as_secs_f64();
        }
        let done = (n / ROUND * ROUND) as f64;
        raw_r.push(t_raw / t_sub);
        let (rw, rr) = (done / t_pub, done / t_sub);
        rust_w.push(rw);
        rust_r.push(rr);
        c_w.push(cw);
        c_r.push(cr);
        ratio_w.push(rw / cw);
        ratio_r.push(rr / cr);
    }
    assert!(sink > 0);
    drop(sub);
    drop(publisher);
    dmaq::unlink(&uri)?;
    drop(raw);
    dmaq::unlink(&raw_uri)?;
    println!("\n## Rust binding: zero-copy calls against C (dmaq {})\n", dmaq::version());
    println!("64-byte messages, one process each, a ring nothing waits on; {} alternating C and Rust runs of", pairs);
    println!("{} messages, medians (the ratio is the median of each adjacent pair's).", n);
    println!("Command: `cargo run --release --example callbench -- ../../build/bench/dmaq-call-bench` in bindings/rust.\n");
    println!("| calls | Rust msg/s | C msg/s | Rust / C |\n|---|---|---|---|");
    println!("| reserve + write + commit | {:.2} M | {:.2} M | {:.3}x |", median(&mut rust_w) / 1e6,
             median(&mut c_w) / 1e6, median(&mut ratio_w));
    println!("| peek + read + release | {:.2} M | {:.2} M | {:.3}x |", median(&mut rust_r) / 1e6,
             median(&mut c_r) / 1e6, median(&mut ratio_r));
    println!("\nIn the Rust process, peek + read + release through the safe API ran at {:.3}x the same calls made",
             median(&mut raw_r));
    println!("raw through `dmaq::ffi` (median of {} runs): the rest of any gap lies between the two programs.", pairs);
    println!("\nTarget: within 5% of C (0.95x or better).");
    Ok(())
}
