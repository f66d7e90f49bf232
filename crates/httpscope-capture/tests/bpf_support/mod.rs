//! What the eBPF and TLS end-to-end tests share: bpftool checks that a capture left nothing
//! behind, and cgroups made for one test.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// After a capture returned, none of its programs or maps may still exist (bpftool). Their
/// memory is released asynchronously after the last fd closes, so this waits up to 5 s.
pub fn assert_gone(programs: &[u32], maps: &[u32]) {
    let t0 = Instant::now();
    loop {
        let progs = bpftool(&["prog", "show"]);
        let mapl = bpftool(&["map", "show"]);
        let left = |ids: &[u32], text: &str| -> Vec<u32> {
            ids.iter()
                .copied()
                .filter(|id| text.lines().any(|l| l.starts_with(&format!("{id}: "))))
                .collect()
        };
        let (lp, lm) = (left(programs, &progs), left(maps, &mapl));
        if lp.is_empty() && lm.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "left behind: programs {lp:?}, maps {lm:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn bpftool(args: &[&str]) -> String {
    let out = Command::new("bpftool")
        .args(args)
        .output()
        .expect("bpftool runs");
    assert!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the cgroup v2 hierarchy is mounted, if it is.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

/// A cgroup made for one test, removed (once empty) at the end.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    /// `<cgroup v2 mount>/<name>-<pid>`, or why it cannot be made (the caller skips).
    pub fn make(name: &str) -> Result<TestCgroup, String> {
        let root = cgroup2_mount().ok_or("no cgroup v2 hierarchy is mounted")?;
        let dir = root.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create a cgroup in {}: {e}", root.display()))?;
        Ok(TestCgroup(dir))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let t0 = Instant::now();
        // The last member's exit is seen by the cgroup a moment after it was reaped.
        while std::fs::remove_dir(&self.0).is_err() && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
