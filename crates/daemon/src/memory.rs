//! Keeping the idle daemon small.
//!
//! `cairn daemon` is a subcommand of a multi-call binary of well over 10 MB. Page faults
//! on code map whole neighbourhoods of page-cache pages (fault-around), so start-up and
//! each burst of requests leave several MB of code resident that an idle daemon does not
//! run. Those pages are clean and file-backed: handing them back costs nothing, and the few
//! the daemon needs fault back in on use. The daemon calls [`release_clean_pages`] when it
//! is ready and again after each quiet period.

/// Read-only private file mappings (code and constants): `(start, length)`.
fn clean_file_ranges(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            if !path.starts_with('/') || perms.contains('w') || !perms.ends_with('p') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end - start))
        })
        .collect()
}

/// Releases the resident, clean pages of read-only file mappings (MADV_PAGEOUT; pages
/// other processes map too are left alone by the kernel). Best effort: a failure only
/// costs memory, so it is logged at debug level.
pub fn release_clean_pages() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for (start, len) in clean_file_ranges(&maps) {
        // SAFETY: the range is a whole read-only file mapping of this process, taken from
        // /proc/self/maps; MADV_PAGEOUT drops clean pages, which fault back in unchanged,
        // and never alters the mapping's contents.
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
    fn picks_read_only_private_file_mappings() {
        let maps = "\
55f515237000-55f5154a3000 r--p 00000000 fe:00 5835893    /usr/bin/cairn
55f5154a3000-55f515efd000 r-xp 0026b000 fe:00 5835893    /usr/bin/cairn
55f515f67000-55f515f6d000 rw-p 00d2d000 fe:00 5835893    /usr/bin/cairn
7f0000000000-7f0000001000 r-xp 00000000 fe:00 1    /usr/lib/libc.so.6
7f0000001000-7f0000002000 r--s 00000000 fe:00 2    /dev/shm/x
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0    [vdso]
";
        assert_eq!(
            clean_file_ranges(maps),
            vec![
                (0x55f515237000, 0x26c000),
                (0x55f5154a3000, 0x55f515efd000 - 0x55f5154a3000),
                (0x7f0000000000, 0x1000),
            ]
        );
    }

    fn rss_file_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap()
    }

    #[test]
    fn releasing_pages_shrinks_rss_and_keeps_the_process_working() {
        let before = rss_file_kb();
        release_clean_pages();
        let after = rss_file_kb();
        assert!(after < before, "{before} kB -> {after} kB");
        // Code that was paged out runs again (it faults back in).
        assert_eq!(clean_file_ranges(""), vec![]);
        assert!(rss_file_kb() > 0);
    }
}
