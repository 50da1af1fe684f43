//! The seed's Process 1: create a named file mapping `MyFileMapping` of 1024 bytes,
//! map a view of it, and write "Hello from Process 1" into it.
//!
//! With Win32 semantics (shmipc's default) the mapping is destroyed when its last
//! handle closes, just as on Windows; so this program keeps it open until you press
//! Enter, and Process 2 must read it meanwhile. Run the pair in two terminals:
//!
//! ```text
//! terminal 1:  cargo run -p shmipc --example process1
//!              (waits: "press Enter to close the mapping")
//! terminal 2:  cargo run -p shmipc --example process2
//!              Received message from Process 1: Hello from Process 1
//! terminal 1:  press Enter; the mapping is gone
//! ```
//!
//! With `--persist` the mapping stays after this program exits (POSIX style), so the
//! two can run one after the other; remove it afterwards with
//! `cargo run -p shmipc-cli -- rm MyFileMapping`. `shmipc demo` runs both for you.

use std::process::ExitCode;

use shmipc::{Persistence, Segment};

fn main() -> ExitCode {
    let persist = std::env::args().skip(1).any(|a| a == "--persist");

    // Create or open a file mapping object
    let h_file_mapping = match Segment::options()
        .size(1024) // Low-order DWORD of the maximum size of the file mapping object
        .persistence(if persist {
            Persistence::UntilRemoved
        } else {
            Persistence::UntilLastClose
        })
        .create_or_open("MyFileMapping") // Name of the file mapping object (named)
    {
        Ok((mapping, _disposition)) => mapping,
        Err(e) => {
            println!("Error creating file mapping: {e}");
            return ExitCode::from(1);
        }
    };

    // Map the file mapping object into the address space of the calling process
    let p_map_view = match h_file_mapping.map(
        0,    // file offset
        1024, // Number of bytes to map
    ) {
        Ok(view) => view,
        Err(e) => {
            println!("Error mapping view of file: {e}");
            drop(h_file_mapping); // CloseHandle(hFileMapping)
            return ExitCode::from(1);
        }
    };

    // Write data to the shared memory (strcpy_s: the text and its terminating NUL)
    if let Err(e) = p_map_view.write_at(0, b"Hello from Process 1\0") {
        println!("Error writing to the view: {e}");
        return ExitCode::from(1);
    }

    if persist {
        println!("Wrote \"Hello from Process 1\" to MyFileMapping; it stays until `shmipc rm MyFileMapping`.");
    } else {
        // The seed closes its handle here at once; on Windows that would destroy the
        // mapping before Process 2 could open it. Hold it until the user says so.
        println!("Wrote \"Hello from Process 1\" to MyFileMapping; run process2 now, then press Enter to close the mapping.");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }

    // Unmap the view and close the file mapping object
    drop(p_map_view); // UnmapViewOfFile(pMapView)
    drop(h_file_mapping); // CloseHandle(hFileMapping)

    ExitCode::SUCCESS
}
