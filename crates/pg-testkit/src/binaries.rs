//! Finding PostgreSQL's server programs (`initdb`, `pg_ctl`, `postgres`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The variable that names the directory holding `initdb` and `pg_ctl`, for machines that keep
/// them somewhere other than Debian's `/usr/lib/postgresql/<major>/bin`.
pub const BINDIR_ENV: &str = "BATON_TEST_PG_BINDIR";

/// Where Debian's packages put each major version's server programs.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The directory of the server programs: `$BATON_TEST_PG_BINDIR` when set, else the newest
/// major version under `/usr/lib/postgresql`, else the first directory on `PATH` that has them.
pub fn server_binaries() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BINDIR_ENV).filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_server_programs(&dir) {
            Ok(dir)
        } else {
            Err(Error::BinariesMissing {
                searched: format!("{} (from ${BINDIR_ENV})", dir.display()),
            })
        };
    }
    if let Some(dir) = newest_debian_version() {
        return Ok(dir);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| has_server_programs(dir))
        .ok_or_else(|| Error::BinariesMissing {
            searched: format!("{DEBIAN_ROOT}/<version>/bin and PATH"),
        })
}

/// The `bin` directory of the highest major version installed the Debian way.
fn newest_debian_version() -> Option<PathBuf> {
    let entries = std::fs::read_dir(DEBIAN_ROOT).ok()?;
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            // Major versions are whole numbers since 10; older ones ("9.6") sort by their first
            // number, which is all that matters for picking the newest.
            let name = entry.file_name();
            let major: u32 = name.to_str()?.split('.').next()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server_programs(&bin).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

fn has_server_programs(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|program| dir.join(program).is_file())
}
