//! The smallest dmaq publisher in Rust: waits for N subscribers (C, Python
//! or Rust ones), sends messages written in place, then "bye".
//!
//!     cargo run --example publisher -- [URI] [MESSAGES] [SUBSCRIBERS]
use std::time::Duration;

fn main() -> Result<(), dmaq::Error> {
    let args: Vec<String> = std::env::args().collect();
    let uri = args.get(1).map_or("shm://demo", |s| s.as_str());
    let messages: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let want: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut publisher = dmaq::Publisher::open(uri, &dmaq::Options::broadcast().block().capacity(1 << 16))?;
    while dmaq::stat(uri)?.subscribers < want {
        std::thread::sleep(Duration::from_millis(10)); // a broadcast reaches those attached when it is sent
    }
    println!("publisher {}: {} subscribers attached, sending {} messages", publisher.id(), want, messages);
    for i in 0..messages {
        let text = format!("message {} from Rust", i);
        let mut lease = publisher.reserve(text.len(), None)?; // written in place, in the ring
        lease.copy_from_slice(text.as_bytes());
        lease.commit(text.len())?;
    }
    publisher.send(b"bye", None)
}
