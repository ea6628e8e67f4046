//! Several threads, each with its own subscriber on one channel, and a
//! publisher thread: every subscriber gets every message, in order.
mod common;
use common::{fresh_uri, Cleanup};
use dmaq::{Options, Publisher, Subscriber};
use std::time::Duration;

#[test]
fn a_subscriber_per_thread() {
    const THREADS: usize = 4;
    const MESSAGES: u64 = 20_000;
    let uri = fresh_uri("threads");
    let _c = Cleanup(uri.clone());
    let opts = Options::broadcast().capacity(1 << 16);
    // Open the subscribers here and move them in: handles are Send.
    let subs: Vec<Subscriber> = (0..THREADS).map(|_| Subscriber::open(&uri, &opts).unwrap()).collect();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            std::thread::spawn(move || {
                for i in 0..MESSAGES {
                    let msg = sub.peek(Some(Duration::from_secs(30))).unwrap();
                    assert_eq!(u64::from_le_bytes(msg[..8].try_into().unwrap()), i, "in order, none missing");
                }
            })
        })
        .collect();
    let mut publisher = Publisher::open(&uri, &opts).unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            let mut w = publisher.reserve(8, None).unwrap();
            w.copy_from_slice(&i.to_le_bytes());
            w.commit(8).unwrap();
        }
    });
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
}
