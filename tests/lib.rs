//! Cross-crate integration tests live in `it/`; this library is their shared support.
