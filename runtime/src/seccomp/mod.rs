//! linux.seccomp compiled to a classic BPF program (no libseccomp): one
//! block per rule, first match wins, 64-bit argument comparisons done on
//! both 32-bit halves, everything else gets the default action.
//!
//! Only the native architecture (x86_64) is encoded; syscalls made through
//! another ABI (i386, x32) get the default action, which for the usual
//! deny-by-default profiles means they are refused.

mod table;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as A, LinuxSeccompFilterFlag, LinuxSeccompOperator as Op,
};

/// Errors compiling or loading a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("not supported yet: {0}")]
    Unsupported(String),
    #[error("seccomp profile too large ({0} instructions, the kernel allows 4096)")]
    TooLarge(usize),
    #[error("load seccomp filter: {0}")]
    Load(std::io::Error),
}

/// One BPF instruction (struct sock_filter).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct Fprog {
    len: u16,
    filter: *const Insn,
}

/// A compiled filter, ready to load.
#[derive(Debug, Clone)]
pub struct Filter {
    prog: Vec<Insn>,
    flags: libc::c_ulong,
}

const LD_W_ABS: u16 = 0x20;
const JEQ: u16 = 0x15;
const JGT: u16 = 0x25;
const JGE: u16 = 0x35;
const AND: u16 = 0x54;
const RET: u16 = 0x06;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Jump target inside a rule block, resolved when the block is complete.
#[derive(Clone, Copy)]
enum T {
    Next,
    Fail,
    Skip(u8),
}

struct Block {
    insns: Vec<(Insn, T, T)>,
}

impl Block {
    fn st(&mut self, code: u16, k: u32) {
        self.insns.push((stmt(code, k), T::Next, T::Next));
    }
    fn j(&mut self, code: u16, k: u32, jt: T, jf: T) {
        self.insns.push((stmt(code, k), jt, jf));
    }
    /// Resolve labels: Fail jumps past the block's final `ret`.
    fn finish(self) -> Vec<Insn> {
        let n = self.insns.len();
        self.insns
            .into_iter()
            .enumerate()
            .map(|(i, (mut ins, jt, jf))| {
                let r = |t: T| match t {
                    T::Next => 0,
                    T::Skip(s) => s,
                    T::Fail => (n - i - 1) as u8,
                };
                ins.jt = r(jt);
                ins.jf = r(jf);
                ins
            })
            .collect()
    }
}

fn action(a: A, errno: Option<u32>) -> Result<u32, SeccompError> {
    let e = errno.unwrap_or(libc::EPERM as u32) & 0xffff;
    Ok(match a {
        A::ScmpActKill | A::ScmpActKillThread => 0,
        A::ScmpActKillProcess => 0x8000_0000,
        A::ScmpActTrap => 0x0003_0000,
        A::ScmpActErrno => 0x0005_0000 | e,
        A::ScmpActTrace => 0x7ff0_0000 | e,
        A::ScmpActLog => 0x7ffc_0000,
        A::ScmpActAllow => 0x7fff_0000,
        A::ScmpActNotify => {
            return Err(SeccompError::Unsupported("seccomp SCMP_ACT_NOTIFY".into()))
        }
    })
}

fn number(name: &str) -> Option<u32> {
    table::X86_64
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| table::X86_64[i].1)
}

/// Offset of the low (lo=true) or high half of syscall argument `i`.
fn arg_off(i: usize, lo: bool) -> u32 {
    16 + 8 * i as u32 + if lo { 0 } else { 4 }
}

fn compare(b: &mut Block, idx: usize, op: Op, v: u64, v2: Option<u64>) {
    let (hi, lo) = ((v >> 32) as u32, v as u32);
    let (ld_hi, ld_lo) = (arg_off(idx, false), arg_off(idx, true));
    match op {
        Op::ScmpCmpEq => {
            b.st(LD_W_ABS, ld_hi);
            b.j(JEQ, hi, T::Next, T::Fail);
            b.st(LD_W_ABS, ld_lo);
            b.j(JEQ, lo, T::Next, T::Fail);
        }
        Op::ScmpCmpNe => {
            b.st(LD_W_ABS, ld_hi);
            b.j(JEQ, hi, T::Next, T::Skip(2));
            b.st(LD_W_ABS, ld_lo);
            b.j(JEQ, lo, T::Fail, T::Next);
        }
        Op::ScmpCmpMaskedEq => {
            let want = v2.unwrap_or(0);
            b.st(LD_W_ABS, ld_hi);
            b.st(AND, hi);
            b.j(JEQ, (want >> 32) as u32, T::Next, T::Fail);
            b.st(LD_W_ABS, ld_lo);
            b.st(AND, lo);
            b.j(JEQ, want as u32, T::Next, T::Fail);
        }
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            let low_jump = if op == Op::ScmpCmpGt { JGT } else { JGE };
            b.st(LD_W_ABS, ld_hi);
            b.j(JGT, hi, T::Skip(3), T::Next);
            b.j(JEQ, hi, T::Next, T::Fail);
            b.st(LD_W_ABS, ld_lo);
            b.j(low_jump, lo, T::Next, T::Fail);
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            // lo < v  <=> !(lo >= v);  lo <= v <=> !(lo > v)
            let low_jump = if op == Op::ScmpCmpLt { JGE } else { JGT };
            b.st(LD_W_ABS, ld_hi);
            b.j(JGE, hi, T::Next, T::Skip(3));
            b.j(JEQ, hi, T::Next, T::Fail);
            b.st(LD_W_ABS, ld_lo);
            b.j(low_jump, lo, T::Fail, T::Next);
        }
    }
}

/// Compile a profile (done at validation time too, so errors come early).
pub fn compile(s: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::Unsupported(
            "seccomp on this architecture".into(),
        ));
    }
    if s.listener_path().is_some() {
        return Err(SeccompError::Unsupported("seccomp listenerPath".into()));
    }
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut prog = vec![
        stmt(LD_W_ABS, 4),
        Insn {
            code: JEQ,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        stmt(RET, default),
        stmt(LD_W_ABS, 0),
        Insn {
            code: JGE,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        stmt(RET, default),
    ];
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            // Names this architecture does not have are skipped, as libseccomp does.
            let Some(nr) = number(name) else { continue };
            let mut b = Block { insns: Vec::new() };
            b.st(LD_W_ABS, 0);
            b.j(JEQ, nr, T::Next, T::Fail);
            for a in rule.args().iter().flatten() {
                if a.index() > 5 {
                    return Err(SeccompError::Unsupported(format!(
                        "seccomp argument index {}",
                        a.index()
                    )));
                }
                compare(&mut b, a.index(), a.op(), a.value(), a.value_two());
            }
            b.st(RET, act);
            prog.extend(b.finish());
        }
    }
    prog.push(stmt(RET, default));
    if prog.len() > 4096 {
        return Err(SeccompError::TooLarge(prog.len()));
    }
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            other => return Err(SeccompError::Unsupported(format!("seccomp flag {other:?}"))),
        };
    }
    Ok(Filter { prog, flags })
}

impl Filter {
    /// Load into the calling thread. Needs no_new_privs or CAP_SYS_ADMIN.
    pub fn load(&self) -> Result<(), SeccompError> {
        let fp = Fprog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr(),
        };
        // SAFETY: fp points at a live instruction array of fp.len entries.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &fp as *const Fprog,
            )
        };
        if r != 0 {
            return Err(SeccompError::Load(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.prog.len()
    }

    /// Whether the program is empty (never: it always has a default return).
    pub fn is_empty(&self) -> bool {
        self.prog.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_knows_common_calls() {
        assert!(table::X86_64.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(number("read"), Some(0));
        assert_eq!(number("execve"), Some(59));
        assert_eq!(number("no_such_call"), None);
    }
}
