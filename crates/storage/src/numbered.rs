//! Directories of files named by a number: 16 lowercase hex digits and an
//! extension (`0000000000000007.seg`). Segment files and request-run files
//! share the naming, the size on disk and the directory fsync.

use std::fs::File;
use std::path::Path;

/// The name of file `no` with extension `ext`.
pub(crate) fn name(no: u64, ext: &str) -> String {
    format!("{no:016x}.{ext}")
}

/// The number of a file named by [`name`] with extension `ext`; `None`
/// for any other name.
pub(crate) fn parse(file_name: &str, ext: &str) -> Option<u64> {
    let hex = file_name.strip_suffix(ext)?.strip_suffix('.')?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// fsyncs a directory (so a file created or removed in it stays so).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The numbered files with extension `ext` in `dir`, and their bytes on
/// disk (entries that cannot be read are skipped: a size report).
pub(crate) fn disk_usage(dir: &Path, ext: &str) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let ours = e.file_name().to_str().and_then(|n| parse(n, ext)).is_some();
            if let (true, Ok(m)) = (ours, e.metadata()) {
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_other_names_do_not() {
        for no in [0, 7, u64::MAX] {
            assert_eq!(parse(&name(no, "seg"), "seg"), Some(no));
            assert_eq!(parse(&name(no, "seg"), "run"), None);
        }
        for bad in [
            "7.seg",
            "00000000000000007.seg",
            "000000000000000g.seg",
            "0000000000000007seg",
            "0000000000000007.seg.tmp",
        ] {
            assert_eq!(parse(bad, "seg"), None, "{bad}");
        }
    }
}
