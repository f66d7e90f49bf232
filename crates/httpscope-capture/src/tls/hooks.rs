//! Where to hook OpenSSL: its public functions, or the two internal functions they share.
//!
//! Measured on the target machines (x86_64 guests, nested virtualisation): a uprobe on an
//! instruction the kernel cannot emulate costs a single-step trap (#DB), which the hypervisor
//! intercepts; with probes on `SSL_read`/`SSL_write` (whose first instruction is `sub
//! $imm,%rsp`) nginx + wrk spent about +69 µs of CPU per https request, against +18 µs with the
//! probes on the internal functions, whose first instruction is a `push` the kernel emulates.
//!
//! In OpenSSL 1.1.1 and 3.x, `SSL_read` and `SSL_read_ex` both call
//! `ssl_read_internal(SSL *, void *buf, size_t num, size_t *readbytes)` (and the write pair
//! `ssl_write_internal`), which returns 1 on success with the byte count in `*readbytes`:
//! the shape of the `_ex` functions, so the same BPF programs serve. The internal functions
//! are not exported; they are found as the target of the call that `SSL_read_ex` makes
//! right after its prologue, and used only when `SSL_read` calls the same target (so one
//! probe sees every call of both, exactly once). Anything else: the public functions.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable};

/// File offsets of `ssl_read_internal` and `ssl_write_internal` in one libssl file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenSslInternal {
    /// `ssl_read_internal`.
    pub read: u64,
    /// `ssl_write_internal`.
    pub write: u64,
}

/// The target of the first instruction after an `_ex` function's prologue, when it is a
/// `call rel32`: the prologue may be `endbr64` and one `sub $imm8,%rsp`, nothing else.
fn call_after_prologue(code: &[u8], vaddr: u64) -> Option<u64> {
    let mut i = 0;
    if code.get(..4) == Some(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        i += 4;
    }
    if code.get(i..i + 3) == Some(&[0x48, 0x83, 0xec]) {
        i += 4;
    }
    call_at(code, vaddr, i)
}

fn call_at(code: &[u8], vaddr: u64, i: usize) -> Option<u64> {
    (*code.get(i)? == 0xe8).then_some(())?;
    rel32_at(code, vaddr, i)
}

/// The target of a `call rel32` or `jmp rel32` at `code[i]`.
fn call_or_jmp_at(code: &[u8], vaddr: u64, i: usize) -> Option<u64> {
    matches!(*code.get(i)?, 0xe8 | 0xe9).then_some(())?;
    rel32_at(code, vaddr, i)
}

fn rel32_at(code: &[u8], vaddr: u64, i: usize) -> Option<u64> {
    let rel = i32::from_le_bytes(code.get(i + 1..i + 5)?.try_into().ok()?);
    vaddr
        .checked_add(i as u64 + 5)?
        .checked_add_signed(i64::from(rel))
}

/// Whether `code` (the start of a function at `vaddr`) contains a `call` to `target`.
fn calls(code: &[u8], vaddr: u64, target: u64) -> bool {
    (0..code.len()).any(|i| call_at(code, vaddr, i) == Some(target))
}

/// Bytes of a function's start looked at.
const WINDOW: usize = 96;

/// Whether GnuTLS's `gnutls_record_send` is a tail call to `gnutls_record_send2` (directly or
/// through its PLT slot), as in GnuTLS >= 3.6.3. Then the send probe goes on
/// `gnutls_record_send2`, whose first instruction is a `push` (emulated, cheap) where
/// `gnutls_record_send` starts with an `xor` (single-stepped), and which also sees programs
/// that call `gnutls_record_send2` themselves; each send is still seen once.
pub fn gnutls_send2(path: &Path) -> bool {
    gnutls_send2_inner(path).unwrap_or(false)
}

fn gnutls_send2_inner(path: &Path) -> Option<bool> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let find = |name: &str| {
        file.dynamic_symbols()
            .find(|s| s.is_definition() && s.name() == Ok(name))
    };
    let send = find("gnutls_record_send")?;
    let send2 = find("gnutls_record_send2")?.address();
    let bytes_at = |vaddr: u64, len: u64| -> Option<&[u8]> {
        file.sections().find_map(|s| {
            let (off, size) = s.file_range()?;
            let rel = vaddr.checked_sub(s.address())?;
            if rel >= size {
                return None;
            }
            let start = usize::try_from(off + rel).ok()?;
            let end = usize::try_from(off + size.min(rel + len)).ok()?;
            data.get(start..end)
        })
    };
    let code = bytes_at(send.address(), 16)?;
    // The GOT slot that a PLT stub `jmp *disp32(%rip)` jumps through.
    let plt_slot = |stub: u64| -> Option<u64> {
        let b = bytes_at(stub, 6)?;
        if b.get(..2)? != [0xff, 0x25] {
            return None;
        }
        let disp = i32::from_le_bytes(b.get(2..6)?.try_into().ok()?);
        (stub + 6).checked_add_signed(i64::from(disp))
    };
    let slot_is_send2 = |slot: u64| -> bool {
        let Some(relocs) = file.dynamic_relocations() else {
            return false;
        };
        let Some(symbols) = file.dynamic_symbol_table() else {
            return false;
        };
        relocs.into_iter().any(|(at, r)| {
            at == slot
                && matches!(r.target(), object::RelocationTarget::Symbol(i)
                    if symbols.symbol_by_index(i).ok().and_then(|s| s.name().ok())
                        == Some("gnutls_record_send2"))
        })
    };
    Some((0..code.len()).any(|i| {
        call_or_jmp_at(code, send.address(), i)
            .is_some_and(|t| t == send2 || plt_slot(t).is_some_and(slot_is_send2))
    }))
}

/// Finds the internal functions in the libssl at `path`; `None` when the file does not
/// have the expected shape (then the public functions are hooked).
pub fn openssl_internal(path: &Path) -> Option<OpenSslInternal> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    // (virtual address, file offset) of an exported function, and its first bytes.
    let function = |name: &str| -> Option<(u64, &[u8])> {
        let sym = file
            .dynamic_symbols()
            .find(|s| s.is_definition() && s.name() == Ok(name))?;
        let section = file.section_by_index(sym.section_index()?).ok()?;
        let (off, size) = section.file_range()?;
        let start = off.checked_add(sym.address().checked_sub(section.address())?)?;
        let end = (start + WINDOW as u64).min(off + size);
        let code = data.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)?;
        Some((sym.address(), code))
    };
    // A virtual address in an executable section, as a file offset.
    let offset_of = |vaddr: u64| -> Option<u64> {
        file.sections().find_map(|s| {
            let (off, size) = s.file_range()?;
            let rel = vaddr.checked_sub(s.address())?;
            (s.kind() == object::SectionKind::Text && rel < size).then_some(off + rel)
        })
    };
    let internal = |ex: &str, plain: &str| -> Option<u64> {
        let (ex_addr, ex_code) = function(ex)?;
        let target = call_after_prologue(ex_code, ex_addr)?;
        let (addr, code) = function(plain)?;
        calls(code, addr, target).then_some(())?;
        offset_of(target)
    };
    Some(OpenSslInternal {
        read: internal("SSL_read_ex", "SSL_read")?,
        write: internal("SSL_write_ex", "SSL_write")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Debian 12's libssl.so.3 (3.0): SSL_read_ex at 0x35500, SSL_read at 0x35470, both
    // calling ssl_read_internal at 0x352d0.
    const READ_EX: &[u8] = &[
        0x48, 0x83, 0xec, 0x08, 0xe8, 0xc7, 0xfd, 0xff, 0xff, 0x31, 0xd2, 0x85, 0xc0,
    ];
    const READ: &[u8] = &[
        0x48, 0x83, 0xec, 0x18, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00, 0x48, 0x89,
        0x44, 0x24, 0x08, 0x31, 0xc0, 0x85, 0xd2, 0x78, 0x2f, 0x48, 0x89, 0xe1, 0x48, 0x63, 0xd2,
        0xe8, 0x3d, 0xfe, 0xff, 0xff, 0x85, 0xc0,
    ];

    #[test]
    fn internal_call_found_in_real_bytes() {
        assert_eq!(call_after_prologue(READ_EX, 0x35500), Some(0x352d0));
        assert!(calls(READ, 0x35470, 0x352d0));
        assert!(!calls(READ, 0x35470, 0x352d4));
        // With endbr64 in front.
        let mut cet = vec![0xf3, 0x0f, 0x1e, 0xfa];
        cet.extend_from_slice(READ_EX);
        assert_eq!(call_after_prologue(&cet, 0x35500 - 4), Some(0x352d0));
    }

    #[test]
    fn other_shapes_are_refused() {
        // SSL_read's own prologue goes on with more than a sub: no call right after it.
        assert_eq!(call_after_prologue(READ, 0x35470), None);
        assert_eq!(call_after_prologue(&[], 0), None);
        assert_eq!(call_after_prologue(&[0xe8, 1, 2], 0), None);
        assert_eq!(
            call_after_prologue(&[0xe8, 0, 0, 0, 0x80], 0),
            None,
            "underflow"
        );
    }

    #[test]
    fn system_libgnutls_if_present() {
        // Debian 12's GnuTLS 3.7: gnutls_record_send jumps to gnutls_record_send2@plt.
        let p = Path::new("/usr/lib/x86_64-linux-gnu/libgnutls.so.30");
        if p.exists() {
            assert!(gnutls_send2(p));
        }
        assert!(!gnutls_send2(Path::new("/nonexistent")));
        assert!(openssl_internal(Path::new("/nonexistent")).is_none());
    }

    #[test]
    fn system_libssl_if_present() {
        for p in [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/usr/lib64/libssl.so.3",
        ] {
            let path = Path::new(p);
            if !path.exists() {
                continue;
            }
            // Whatever the build, the answer is either the public functions (None) or two
            // distinct offsets inside the file, each at a function start that pushes.
            if let Some(i) = openssl_internal(path) {
                let data = std::fs::read(path).unwrap();
                assert_ne!(i.read, i.write);
                for off in [i.read, i.write] {
                    let b = &data[off as usize..];
                    assert!(
                        matches!(b[0], 0x50..=0x57 | 0x41 | 0xf3),
                        "{p}: {:02x?}",
                        &b[..8]
                    );
                }
            }
        }
    }
}
