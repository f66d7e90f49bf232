//! Keeps the committed BPF objects in `bpf/` in step with their C sources.
//!
//! Each `bpf/<name>.bpf.c` has a committed, stripped object `bpf/<name>.bpf.o` and a sidecar
//! `bpf/<name>.bpf.o.srchash` holding a hash of the sources it was built from (the program,
//! every header in `bpf/`, and the compiler flags). When the hash still matches, nothing
//! runs: `cargo build` needs no clang. When the C changed and clang is present, the object
//! is rebuilt (`clang -O2 -g -target bpf`, then `llvm-strip -g`) and the committed copy and
//! its hash are refreshed, so the developer commits them with the C. When clang is missing
//! or fails, the build warns and keeps the committed object.
//!
//! The hash is FNV-1a 64, written here because it is ten lines and must stay stable across
//! Rust releases (std's `DefaultHasher` does not promise that).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const CFLAGS: &[&str] = &[
    "-O2",
    "-g",
    "-target",
    "bpf",
    "-D__TARGET_ARCH_x86",
    "-Wall",
];

fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("bpf");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HTTPSCOPE_CLANG");
    if target_os != "linux" || !dir.is_dir() {
        return;
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let headers: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "h"))
        .collect();
    let programs: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    for p in headers.iter().chain(programs.iter()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let mut header_hash = 0xcbf2_9ce4_8422_2325u64;
    for h in &headers {
        fnv1a(&mut header_hash, h.file_name().unwrap().as_encoded_bytes());
        fnv1a(&mut header_hash, &fs::read(h).unwrap());
    }
    for prog in programs {
        let mut hash = header_hash;
        fnv1a(&mut hash, &fs::read(prog).unwrap());
        fnv1a(&mut hash, CFLAGS.join(" ").as_bytes());
        let hash = format!("{hash:016x}\n");
        let obj = prog.with_extension("o");
        let hash_file = PathBuf::from(format!("{}.srchash", obj.display()));
        let current = fs::read_to_string(&hash_file).unwrap_or_default();
        if current == hash && obj.is_file() {
            continue;
        }
        match compile(prog, &obj, &dir) {
            Ok(()) => fs::write(&hash_file, hash).unwrap(),
            Err(why) if obj.is_file() => println!(
                "cargo:warning={} changed but could not be rebuilt ({why}); using the committed object",
                prog.display()
            ),
            Err(why) => panic!("{} has no object and could not be built: {why}", prog.display()),
        }
    }
}

fn compile(src: &Path, obj: &Path, include: &Path) -> Result<(), String> {
    let clang = std::env::var("HTTPSCOPE_CLANG").unwrap_or_else(|_| "clang".into());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(obj.file_name().unwrap());
    let status = Command::new(&clang)
        .args(CFLAGS)
        .arg("-I")
        .arg(include)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&out)
        .status()
        .map_err(|e| format!("{clang}: {e}"))?;
    if !status.success() {
        return Err(format!("{clang} failed with {status}"));
    }
    let strip = Command::new("llvm-strip")
        .arg("-g")
        .arg(&out)
        .status()
        .map_err(|e| format!("llvm-strip: {e}"))?;
    if !strip.success() {
        return Err(format!("llvm-strip failed with {strip}"));
    }
    fs::copy(&out, obj).map_err(|e| format!("copying {}: {e}", out.display()))?;
    Ok(())
}
