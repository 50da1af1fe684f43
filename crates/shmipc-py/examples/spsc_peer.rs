//! A Rust spsc peer for the Python tests (`tests/test_rust_interop.py`): the Rust
//! library on the other side of a channel from `shmipc.Producer`/`Consumer`.
//!
//! ```text
//! spsc_peer produce NAME N   create-or-open as producer, send "rust-0".."rust-N-1", exit
//! spsc_peer consume NAME N   create-or-open as consumer, print N messages, one a line
//! ```

use std::process::ExitCode;
use std::time::Duration;

use shmipc::channel::spsc::Options;

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [role, name, n] = args.as_slice() else {
        return Err("usage: spsc_peer produce|consume NAME N".to_owned());
    };
    let n: usize = n.parse().map_err(|e| format!("N `{n}`: {e}"))?;
    let opts = Options::new().capacity(16).slot_size(4096);
    let timeout = Duration::from_secs(30);
    match role.as_str() {
        "produce" => {
            let mut tx = opts
                .create_or_open_producer(name)
                .map_err(|e| e.to_string())?;
            for i in 0..n {
                tx.send_timeout(format!("rust-{i}").as_bytes(), timeout)
                    .map_err(|e| e.to_string())?;
            }
            println!("sent");
            Ok(())
        }
        "consume" => {
            let mut rx = opts
                .create_or_open_consumer(name)
                .map_err(|e| e.to_string())?;
            println!("ready");
            for _ in 0..n {
                let s = rx.recv_timeout(timeout).map_err(|e| e.to_string())?;
                println!("{}", String::from_utf8_lossy(&s));
            }
            Ok(())
        }
        other => Err(format!("unknown role `{other}`: produce or consume")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spsc_peer: {e}");
            ExitCode::FAILURE
        }
    }
}
