//! Finding the TLS library files to attach to.
//!
//! A uprobe belongs to a file (its inode), not to a process: attached once to
//! `libssl.so.3`, it fires in every process that maps that file, now or later. So the
//! libraries are collected as files, deduplicated by (device, inode), from
//! - `/proc/<pid>/maps` of every process (at start, periodically, and for programs that just
//!   started), opened through `/proc/<pid>/root` so that a container's own copy is found;
//! - the usual library directories, so the host's libraries are attached before any process
//!   maps them (a `python3` that imports `ssl` a moment after it starts is seen from its first
//!   request).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::event::Library;

/// A library file found somewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Which library.
    pub library: Library,
    /// A path that opens it from this process (through `/proc/<pid>/root` when found in a
    /// process's maps).
    pub path: PathBuf,
    /// Its device and inode: the identity of the file.
    pub file: (u64, u64),
}

/// The directories searched at start for the host's libraries.
pub const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/lib64",
];

/// A TLS library mapping found in a `/proc/<pid>/maps` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping<'a> {
    /// Which library.
    pub library: Library,
    /// Its path as the process saw it when mapping it (without ` (deleted)`).
    pub path: &'a [u8],
    /// The mapping's address range (names its `/proc/<pid>/map_files` entry).
    pub range: (u64, u64),
    /// The file was deleted or replaced since (a package upgrade under a running program): it
    /// is opened through `/proc/<pid>/map_files`, as the path names another file or none.
    pub deleted: bool,
}

/// The TLS library mappings in the text of a `/proc/<pid>/maps` file (each path once, in
/// order). Lines that do not parse and anonymous mappings are skipped.
pub fn tls_paths_in_maps(maps: &[u8]) -> Vec<Mapping<'_>> {
    let mut out: Vec<Mapping<'_>> = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        // address perms offset dev inode pathname: the path starts after five fields.
        let mut rest = line;
        let mut ok = true;
        for _ in 0..5 {
            let trimmed = trim_start(rest);
            match trimmed.iter().position(|&b| b == b' ') {
                Some(end) => rest = &trimmed[end..],
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        let mut path = trim_start(rest);
        let deleted = path.ends_with(b" (deleted)");
        if deleted {
            path = &path[..path.len() - b" (deleted)".len()];
        }
        if !path.starts_with(b"/") {
            continue;
        }
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        let Some(library) = Library::from_file_name(name) else {
            continue;
        };
        let Some(range) = parse_range(line) else {
            continue;
        };
        if !out.iter().any(|m| m.path == path) {
            out.push(Mapping {
                library,
                path,
                range,
                deleted,
            });
        }
    }
    out
}

fn parse_range(line: &[u8]) -> Option<(u64, u64)> {
    let field = line.split(|&b| b == b' ').next()?;
    let text = std::str::from_utf8(field).ok()?;
    let (a, b) = text.split_once('-')?;
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b' ').count();
    &b[n..]
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    m.is_file().then(|| (m.dev(), m.ino()))
}

/// The TLS libraries process `pid` maps, as files this process can open.
pub fn in_process(pid: u32) -> Vec<Candidate> {
    let Ok(maps) = std::fs::read(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    tls_paths_in_maps(&maps)
        .into_iter()
        .filter_map(|m| {
            let path = if m.deleted {
                PathBuf::from(format!(
                    "/proc/{pid}/map_files/{:x}-{:x}",
                    m.range.0, m.range.1
                ))
            } else {
                let mut path = PathBuf::from(format!("/proc/{pid}/root"));
                path.push(Path::new(OsStr::from_bytes(&m.path[1..])));
                path
            };
            let file = identity(&path)?;
            Some(Candidate {
                library: m.library,
                path,
                file,
            })
        })
        .collect()
}

/// Every process's TLS libraries, each file once (skipping files in `known`).
pub fn in_all_processes(known: &HashSet<(u64, u64)>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        for c in in_process(pid) {
            if !known.contains(&c.file) && !out.iter().any(|o| o.file == c.file) {
                out.push(c);
            }
        }
    }
    out
}

/// The TLS libraries in `dirs` (not recursive), each file once.
pub fn in_dirs(dirs: &[&str]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let Some(library) = path
                .file_name()
                .and_then(|n| Library::from_file_name(n.as_bytes()))
            else {
                continue;
            };
            // Follows symlinks: libssl.so -> libssl.so.3 is the same file, found once, and
            // named by its real path.
            let Some(file) = identity(&path) else {
                continue;
            };
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            if !out.iter().any(|o| o.file == file) {
                out.push(Candidate {
                    library,
                    path,
                    file,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &[u8] = b"\
55d0c3a00000-55d0c3a28000 r--p 00000000 fd:01 1573000                    /usr/sbin/nginx
7f1a2c000000-7f1a2c021000 rw-p 00000000 00:00 0 
7f1a2d200000-7f1a2d21f000 r--p 00000000 fd:01 1574001                    /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1a2d21f000-7f1a2d27a000 r-xp 0001f000 fd:01 1574001                    /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1a2d400000-7f1a2d500000 r-xp 00000000 fd:01 1574002                    /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f1a2d600000-7f1a2d700000 r-xp 00000000 fd:01 1574003                    /opt/my app/lib/libgnutls.so.30
7f1a2d800000-7f1a2d900000 r-xp 00000000 fd:01 1574004                    /usr/lib/x86_64-linux-gnu/libssl3.so
7f1a2da00000-7f1a2db00000 r-xp 00000000 fd:01 1574005                    /tmp/libssl.so.1.1 (deleted)
7ffd1c1f0000-7ffd1c211000 rw-p 00000000 00:00 0                          [stack]
garbage line
7f1a";

    #[test]
    fn maps_lines() {
        let found = tls_paths_in_maps(MAPS);
        assert_eq!(
            found,
            vec![
                Mapping {
                    library: Library::OpenSsl,
                    path: b"/usr/lib/x86_64-linux-gnu/libssl.so.3",
                    range: (0x7f1a2d200000, 0x7f1a2d21f000),
                    deleted: false,
                },
                Mapping {
                    library: Library::GnuTls,
                    path: b"/opt/my app/lib/libgnutls.so.30",
                    range: (0x7f1a2d600000, 0x7f1a2d700000),
                    deleted: false,
                },
                Mapping {
                    library: Library::OpenSsl,
                    path: b"/tmp/libssl.so.1.1",
                    range: (0x7f1a2da00000, 0x7f1a2db00000),
                    deleted: true,
                },
            ]
        );
        assert!(tls_paths_in_maps(b"").is_empty());
        assert!(tls_paths_in_maps(&[0xff; 300]).is_empty());
    }

    #[test]
    fn own_process_and_dirs_do_not_fail() {
        // This test binary need not map a TLS library; whatever is found must be real files.
        for c in in_process(std::process::id())
            .into_iter()
            .chain(in_dirs(LIBRARY_DIRS))
        {
            assert!(c.path.is_file(), "{c:?}");
            assert_eq!(identity(&c.path), Some(c.file));
        }
        assert!(in_process(u32::MAX).is_empty());
    }
}
