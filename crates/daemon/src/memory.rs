//! Keeping the idle daemon small.
//!
//! `cairn daemon` is a subcommand of a multi-call binary of well over 10 MB. Page faults
//! on its text map whole neighbourhoods of page-cache pages (fault-around), so start-up
//! leaves several MB of code resident that the idle daemon never runs again. Those pages are
//! clean and file-backed: handing them back is free, and the few the daemon needs fault
//! back in on use.

use std::path::Path;

/// A read-only mapping of the executable: `(start, length)`.
fn executable_ranges(maps: &str, exe: &Path) -> Vec<(usize, usize)> {
    let exe = exe.to_string_lossy();
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            if path != exe || perms.contains('w') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end - start))
        })
        .collect()
}

/// Releases the resident, clean pages of the executable's read-only mappings
/// (MADV_PAGEOUT). Best effort: failures only cost memory, so they are logged at debug.
pub fn release_startup_pages() {
    let (Ok(maps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return;
    };
    for (start, len) in executable_ranges(&maps, &exe) {
        // SAFETY: the range is a whole mapping of this process taken from /proc/self/maps;
        // MADV_PAGEOUT only drops clean file-backed pages (they fault back in unchanged) and
        // never changes the mapping's contents.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
        if rc != 0 {
            tracing::debug!(
                "madvise(PAGEOUT) failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_read_only_mappings_of_the_executable() {
        let maps = "\
55f515237000-55f5154a3000 r--p 00000000 fe:00 5835893    /usr/bin/cairn
55f5154a3000-55f515efd000 r-xp 0026b000 fe:00 5835893    /usr/bin/cairn
55f515f67000-55f515f6d000 rw-p 00d2d000 fe:00 5835893    /usr/bin/cairn
7f0000000000-7f0000001000 r-xp 00000000 fe:00 1    /usr/lib/libc.so.6
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
";
        let ranges = executable_ranges(maps, Path::new("/usr/bin/cairn"));
        assert_eq!(
            ranges,
            vec![
                (0x55f515237000, 0x26c000),
                (0x55f5154a3000, 0x55f515efd000 - 0x55f5154a3000)
            ]
        );
    }

    #[test]
    fn releasing_pages_keeps_the_process_working() {
        let status = || std::fs::read_to_string("/proc/self/status").unwrap();
        let rss_file = || {
            status()
                .lines()
                .find_map(|l| l.strip_prefix("RssFile:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
                .unwrap()
        };
        let before = rss_file();
        release_startup_pages();
        let after = rss_file();
        assert!(after <= before, "{before} kB -> {after} kB");
        // Code paged out is paged back in on use.
        assert_eq!(executable_ranges("", Path::new("/x")), vec![]);
    }
}
