//! Giving back the memory of start-up code. Parsing flags and the first table, building the
//! runtime and binding listeners touch megabytes of the program's code and read-only data that
//! serving never runs again, and those pages stay resident (they are most of an idle proxy's RSS:
//! ~10 MB of ~11 MB). Once the proxy is up, its own read-only mappings are advised
//! `MADV_PAGEOUT` (Linux ≥ 5.4): the kernel drops the clean pages this process alone maps, and
//! the ones serving needs fault back in from the page cache on first use. Pages shared with
//! another process (a second proxy on the same binary) are left alone by the kernel.
use std::io;

/// Advises the program's read-only mappings out; returns the bytes advised.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // the one call to madvise; the library crate forbids unsafe code
pub fn release() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = 0;
    for line in maps.lines() {
        let Some((start, end)) = readonly_mapping_of(line, &exe) else {
            continue;
        };
        // SAFETY: the range is a whole mapping of this process, read from /proc/self/maps; the
        // advice changes no content (clean file-backed pages are re-read from the file on
        // access), so no reference into the range is invalidated.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        advised += end - start;
    }
    Ok(advised)
}

#[cfg(not(target_os = "linux"))]
pub fn release() -> io::Result<usize> {
    Ok(0)
}

/// The address range of a /proc/self/maps line that maps `exe` without write permission.
fn readonly_mapping_of(line: &str, exe: &std::path::Path) -> Option<(usize, usize)> {
    let mut fields = line.split_ascii_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    // offset, device, inode, then the path (which may contain spaces).
    let path = line
        .splitn(6, |c: char| c.is_ascii_whitespace())
        .nth(5)?
        .trim_start();
    if perms.contains('w') || std::path::Path::new(path) != exe {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Mutex;

    /// Taken by every test here: `release` pages out this test binary's own code, and a test
    /// running beside the RSS measurement faults its code back in between the two readings (CI
    /// saw RssFile 2,448 kB -> 2,492 kB once). Poisoning is ignored: the lock orders, it guards
    /// nothing.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    #[test]
    fn only_read_only_mappings_of_the_program_are_chosen() {
        let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let exe = Path::new("/opt/ferry proxy/ferry-proxy");
        let maps = [
            (
                "55a2d8e33000-55a2d90f8000 r--p 00000000 fe:00 5390366    /opt/ferry proxy/ferry-proxy",
                true,
            ),
            (
                "55a2d90f8000-55a2d9b40000 r-xp 002c4000 fe:00 5390366    /opt/ferry proxy/ferry-proxy",
                true,
            ),
            (
                "55a2d9b98000-55a2d9b9e000 rw-p 00d62000 fe:00 5390366    /opt/ferry proxy/ferry-proxy",
                false,
            ),
            (
                "7f6bb7528000-7f6bb767e000 r-xp 00026000 fe:00 326279     /usr/lib/x86_64-linux-gnu/libc.so.6",
                false,
            ),
            (
                "7ffd1c7e6000-7ffd1c807000 rw-p 00000000 00:00 0          [stack]",
                false,
            ),
            ("7ffd1c8f0000-7ffd1c8f2000 r-xp 00000000 00:00 0 ", false),
        ];
        for (line, chosen) in maps {
            assert_eq!(readonly_mapping_of(line, exe).is_some(), chosen, "{line}");
        }
        assert_eq!(
            readonly_mapping_of(maps[1].0, exe),
            Some((0x55a2d90f8000, 0x55a2d9b40000))
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_lowers_file_backed_rss_and_the_program_runs_on() {
        let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        fn rss_file_kb() -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .expect("status")
                .lines()
                .find_map(|l| l.strip_prefix("RssFile:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                .expect("RssFile")
        }
        let before = rss_file_kb();
        let advised = release().expect("madvise");
        let after = rss_file_kb();
        assert!(advised > 0, "the test binary's own mappings were found");
        assert!(after < before, "RssFile {before} kB -> {after} kB");
        // Code paged out is paged back in on use.
        assert_eq!(
            readonly_mapping_of("1-2 r--p 0 0:0 0 /x", Path::new("/x")),
            Some((1, 2))
        );
    }
}
