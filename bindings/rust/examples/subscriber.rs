//! The smallest dmaq subscriber in Rust: prints every message until "bye".
//!
//!     cargo run --example subscriber -- [URI] [NAME]
use std::time::Duration;

fn main() -> Result<(), dmaq::Error> {
    let args: Vec<String> = std::env::args().collect();
    let uri = args.get(1).map_or("shm://demo", |s| s.as_str());
    let name = args.get(2).map_or("subscriber", |s| s.as_str());
    let mut sub = dmaq::Subscriber::open(uri, &dmaq::Options::broadcast().block().capacity(1 << 16))?;
    let mut count = 0;
    loop {
        let msg = sub.peek(Some(Duration::from_secs(10)))?; // zero-copy: borrowed from the ring
        if &*msg == b"bye" {
            break;
        }
        count += 1;
        println!("{}: got    seq={} from publisher {}: '{}'", name, msg.seq(), msg.publisher_id(),
                 String::from_utf8_lossy(&msg));
    } // the lease is released here, when `msg` goes out of scope
    println!("{}: done, {} messages", name, count);
    Ok(())
}
