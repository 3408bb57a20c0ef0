//! Random text for passwords and names, from the kernel.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// `bytes` random bytes from the kernel, as hexadecimal.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let source = Path::new("/dev/urandom");
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open(source)
        .and_then(|mut file| file.read_exact(&mut buffer))
        .map_err(|error| Error::Io {
            path: source.to_path_buf(),
            source: error,
        })?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}
