//! A cgroup v2 directory as the kernel side's filter sees it: its id and its depth.
//!
//! The programs keep an event when `bpf_get_current_ancestor_cgroup_id(level) == id`, i.e. the
//! process is in that cgroup or below it. The id of a cgroup v2 directory is its inode number
//! (the kernfs node id, on 64-bit kernels); its level is its depth below the hierarchy's root,
//! counted from the mount's root (a container may mount a subtree, see `/proc/self/mountinfo`).

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// `CGROUP2_SUPER_MAGIC`.
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// A resolved cgroup filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupFilter {
    /// The cgroup's id (inode number of its directory).
    pub id: u64,
    /// Its depth below the root of the cgroup v2 hierarchy (the root is 0).
    pub level: u32,
}

/// Resolves a cgroup v2 directory (absolute, or relative to the first cgroup v2 mount).
pub fn resolve(path: &Path) -> Result<CgroupFilter, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let mounts = cgroup2_mounts(&mountinfo);
    let Some((first, _)) = mounts.first() else {
        return Err("no cgroup v2 hierarchy is mounted".into());
    };
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        first.join(path)
    };
    let full = full
        .canonicalize()
        .map_err(|e| format!("{}: {e}", full.display()))?;
    if !is_cgroup2(&full)? {
        return Err(format!(
            "{} is not in a cgroup v2 hierarchy",
            full.display()
        ));
    }
    let level = level_of(&full, &mounts)
        .ok_or_else(|| format!("{} is under no cgroup v2 mount point", full.display()))?;
    let id = std::fs::metadata(&full)
        .map_err(|e| format!("{}: {e}", full.display()))?
        .ino();
    Ok(CgroupFilter { id, level })
}

fn is_cgroup2(path: &Path) -> Result<bool, String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: NUL in path", path.display()))?;
    // SAFETY: a zeroed statfs is a valid out-parameter; `c` is a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers, see above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "{}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between libcs
    Ok(st.f_type as i64 == CGROUP2_MAGIC)
}

/// The cgroup v2 mounts of a `/proc/self/mountinfo`: (mount point, root of the mount within
/// the hierarchy). Fields: id parent major:minor root mountpoint options... - fstype source.
fn cgroup2_mounts(mountinfo: &str) -> Vec<(PathBuf, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if right.split(' ').next()? != "cgroup2" {
                return None;
            }
            let f: Vec<&str> = left.split(' ').collect();
            Some((
                PathBuf::from(unescape(f.get(4)?)),
                PathBuf::from(unescape(f.get(3)?)),
            ))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn depth(p: &Path) -> u32 {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count() as u32
}

/// The level of `path` (canonical) under the longest matching cgroup v2 mount point.
fn level_of(path: &Path, mounts: &[(PathBuf, PathBuf)]) -> Option<u32> {
    mounts
        .iter()
        .filter(|(at, _)| path.starts_with(at))
        .max_by_key(|(at, _)| depth(at))
        .and_then(|(at, root)| Some(depth(root) + depth(path.strip_prefix(at).ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
33 25 0:29 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
34 25 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
90 80 0:29 /kubepods/pod\\0401 /mnt/my\\040cg rw - cgroup2 cgroup2 rw
";

    #[test]
    fn mounts_and_levels() {
        let m = cgroup2_mounts(MOUNTINFO);
        assert_eq!(
            m,
            vec![
                ("/sys/fs/cgroup/unified".into(), "/".into()),
                ("/mnt/my cg".into(), "/kubepods/pod 1".into()),
            ]
        );
        assert_eq!(level_of(Path::new("/sys/fs/cgroup/unified"), &m), Some(0));
        assert_eq!(
            level_of(Path::new("/sys/fs/cgroup/unified/a/b"), &m),
            Some(2)
        );
        // A subtree mount (containers): the mount's root counts.
        assert_eq!(level_of(Path::new("/mnt/my cg/x"), &m), Some(3));
        assert_eq!(level_of(Path::new("/sys/fs/cgroup/cpu/x"), &m), None);
        assert!(cgroup2_mounts("garbage\n1 2 3\n - \n").is_empty());
    }

    #[test]
    fn unescape_handles_short_and_bad_escapes() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("a\\9zzb"), "a\\9zzb");
        assert_eq!(unescape("\\"), "\\");
    }
}
