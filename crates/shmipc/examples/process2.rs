//! The seed's Process 2: open the file mapping `MyFileMapping` read-only, map a view
//! of it and print the message Process 1 wrote. Run `process1` first, in another
//! terminal (see its documentation), or with `--persist`.

use std::process::ExitCode;

use shmipc::{Access, Segment};

fn main() -> ExitCode {
    // Open the file mapping object created by Process 1
    let h_file_mapping = match Segment::open(
        "MyFileMapping", // Name of the file mapping object
        Access::Read,    // Desired access rights to the file mapping object
    ) {
        Ok(mapping) => mapping,
        Err(e) => {
            println!("Error opening file mapping: {e}");
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

    // Read data from the shared memory (a copy: Process 1 may write at any time)
    let mut p_data = [0u8; 1024];
    if let Err(e) = p_map_view.read_at(0, &mut p_data) {
        println!("Error reading the view: {e}");
        return ExitCode::from(1);
    }
    let text = p_data.split(|&b| b == 0).next().unwrap_or_default();
    println!(
        "Received message from Process 1: {}",
        String::from_utf8_lossy(text)
    );

    // Unmap the view and close the file mapping object
    drop(p_map_view); // UnmapViewOfFile(pMapView)
    drop(h_file_mapping); // CloseHandle(hFileMapping)

    ExitCode::SUCCESS
}
