//! Device rules on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program built
//! from the OCI rules, loaded with bpf(2) and attached to the container's
//! cgroup2 directory (cgroup v2 has no devices.allow/deny files).
//!
//! The kernel runs the program on every open/mknod of a device node by a
//! task of the cgroup; it returns 1 (allow) or 0 (deny, EPERM). Also works
//! on a hybrid host, where it runs before the v1 devices controller.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use tracing::debug;

use super::convert::is_deny_all;
use super::devices::DEFAULT_ALLOWED;
use super::CgroupError;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;

/// One rule in the form the program tests it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevRule {
    allow: bool,
    /// None = any type.
    typ: Option<u32>,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

fn bad(reason: String) -> CgroupError {
    CgroupError::InvalidResource {
        what: "devices",
        reason,
    }
}

fn dev_num(n: Option<i64>) -> Result<Option<u32>, CgroupError> {
    match n {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| bad(format!("invalid device number {n}"))),
    }
}

fn access_bits(access: &str) -> Result<u32, CgroupError> {
    let access = if access.is_empty() { "rwm" } else { access };
    access.chars().try_fold(0, |acc, c| match c {
        'r' => Ok(acc | ACC_READ),
        'w' => Ok(acc | ACC_WRITE),
        'm' => Ok(acc | ACC_MKNOD),
        _ => Err(bad(format!("invalid access {access:?}"))),
    })
}

impl DevRule {
    fn from_oci(r: &LinuxDeviceCgroup) -> Result<Self, CgroupError> {
        let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(DEV_BLOCK),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
            LinuxDeviceType::P => {
                return Err(bad("FIFO (\"p\") device rules are not supported".into()))
            }
        };
        Ok(Self {
            allow: r.allow(),
            typ,
            major: dev_num(r.major())?,
            minor: dev_num(r.minor())?,
            access: access_bits(r.access().as_deref().unwrap_or("rwm"))?,
        })
    }

    fn is_everything(&self) -> bool {
        self.typ.is_none() && self.major.is_none() && self.minor.is_none() && self.access == 7
    }
}

/// The default verdict and the exception rules, in order (later wins), with
/// v1's semantics: an "everything" rule resets the list and sets the default.
pub fn effective_rules(rules: &[LinuxDeviceCgroup]) -> Result<(bool, Vec<DevRule>), CgroupError> {
    let mut default_allow = true;
    let mut list = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let rule = DevRule::from_oci(r)?;
        if rule.is_everything() {
            default_allow = rule.allow;
            list.clear();
        } else {
            list.push(rule);
        }
        if i == 0 && is_deny_all(r) {
            // The devices every container needs come right after the
            // deny-all, so later rules from the spec can still override them.
            for (t, maj, min, acc) in DEFAULT_ALLOWED {
                list.push(DevRule {
                    allow: true,
                    typ: Some(if *t == 'b' { DEV_BLOCK } else { DEV_CHAR }),
                    major: u32::try_from(*maj).ok(),
                    minor: u32::try_from(*min).ok(),
                    access: access_bits(acc)?,
                });
            }
        }
    }
    Ok((default_allow, list))
}

/// One eBPF instruction (struct bpf_insn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND64_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH64_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// Builds the program: r2 = access, r3 = type, r4 = major, r5 = minor; the
/// rules are tested last to first and the first match returns its verdict.
fn program(default_allow: bool, rules: &[DevRule]) -> Result<Vec<Insn>, CgroupError> {
    // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV64_X, 3, 2, 0, 0),
        insn(AND64_K, 3, 0, 0, 0xffff),
        insn(RSH64_K, 2, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Jumps are emitted with a placeholder offset, patched to "next rule".
        let mut block: Vec<(Insn, bool)> = Vec::new();
        let imm =
            |v: u32| i32::try_from(v).map_err(|_| bad(format!("device number {v} too large")));
        if let Some(t) = r.typ {
            block.push((insn(JNE_K, 3, 0, 0, imm(t)?), true));
        }
        if let Some(m) = r.major {
            block.push((insn(JNE_K, 4, 0, 0, imm(m)?), true));
        }
        if let Some(m) = r.minor {
            block.push((insn(JNE_K, 5, 0, 0, imm(m)?), true));
        }
        if r.access != 7 {
            block.push((insn(MOV64_X, 0, 2, 0, 0), false));
            if r.allow {
                // Allow only when every requested access is in the rule.
                block.push((insn(AND64_K, 0, 0, 0, imm(!r.access & 7)?), false));
                block.push((insn(JNE_K, 0, 0, 0, 0), true));
            } else {
                // Deny when any requested access is in the rule.
                block.push((insn(AND64_K, 0, 0, 0, imm(r.access)?), false));
                block.push((insn(JEQ_K, 0, 0, 0, 0), true));
            }
        }
        block.push((insn(MOV64_K, 0, 0, 0, i32::from(r.allow)), false));
        block.push((insn(EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        for (i, (mut ins, is_jump)) in block.into_iter().enumerate() {
            if is_jump {
                ins.off = i16::try_from(len - i - 1).map_err(|_| bad("rule too long".into()))?;
            }
            p.push(ins);
        }
    }
    p.push(insn(MOV64_K, 0, 0, 0, i32::from(default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    Ok(p)
}

/// union bpf_attr, BPF_PROG_LOAD part.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// union bpf_attr, BPF_PROG_ATTACH/DETACH part.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// union bpf_attr, BPF_PROG_QUERY part.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// union bpf_attr, BPF_PROG_GET_FD_BY_ID part.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with an attribute struct of type `T`.
fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    let size = u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX);
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] prefix of
    // union bpf_attr for `cmd`, and `size` is its exact size; pointers inside
    // it (set by the callers) point at buffers that outlive this call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from_ret(r: libc::c_long) -> std::io::Result<OwnedFd> {
    let fd = RawFd::try_from(r).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: bpf(2) returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn load(insns: &[Insn]) -> Result<OwnedFd, CgroupError> {
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| bad("too many device rules".into()))?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: u32::try_from(log.len()).unwrap_or(0),
        log_buf: log.as_mut_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..11].copy_from_slice(b"berth_devcg");
    match sys_bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(r) => fd_from_ret(r).map_err(|e| load_err(e, "")),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(load_err(e, &String::from_utf8_lossy(&log[..end])))
        }
    }
}

fn load_err(e: std::io::Error, log: &str) -> CgroupError {
    CgroupError::Unsupported(format!(
        "loading the eBPF device program failed: {e}; verifier log: {}",
        log.trim()
    ))
}

pub(super) fn attached_programs(cg: &File) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut q = QueryAttr {
        target_fd: u32::try_from(cg.as_raw_fd()).unwrap_or(u32::MAX),
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: 64,
        ..QueryAttr::default()
    };
    sys_bpf(BPF_PROG_QUERY, &mut q)?;
    ids.truncate(usize::try_from(q.prog_cnt).unwrap_or(0).min(64));
    Ok(ids)
}

/// Replaces the device program of the cgroup2 directory `dir` by one built from `rules`.
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let (default_allow, list) = effective_rules(rules)?;
    let prog = load(&program(default_allow, &list)?)?;
    let cg = File::open(dir).map_err(|source| CgroupError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let sys = |op: &'static str, e: std::io::Error| CgroupError::Notify {
        op,
        path: dir.to_owned(),
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    let old = attached_programs(&cg).map_err(|e| sys("BPF_PROG_QUERY", e))?;
    let fd = |f: RawFd| u32::try_from(f).unwrap_or(u32::MAX);
    let mut attach = AttachAttr {
        target_fd: fd(cg.as_raw_fd()),
        attach_bpf_fd: fd(prog.as_raw_fd()),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    sys_bpf(BPF_PROG_ATTACH, &mut attach).map_err(|e| sys("BPF_PROG_ATTACH", e))?;
    // Only now drop the previous programs, so there is no window without rules.
    for id in old {
        let mut get = GetFdAttr {
            prog_id: id,
            ..GetFdAttr::default()
        };
        let old_fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut get)
            .and_then(fd_from_ret)
            .map_err(|e| sys("BPF_PROG_GET_FD_BY_ID", e))?;
        let mut detach = AttachAttr {
            target_fd: fd(cg.as_raw_fd()),
            attach_bpf_fd: fd(old_fd.as_raw_fd()),
            attach_type: BPF_CGROUP_DEVICE,
            ..AttachAttr::default()
        };
        sys_bpf(BPF_PROG_DETACH, &mut detach).map_err(|e| sys("BPF_PROG_DETACH", e))?;
    }
    debug!(dir = %dir.display(), rules = list.len(), default_allow, "device eBPF program attached");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// Runs the program on a context the way the kernel would (a tiny interpreter
    /// for the instructions `program` emits).
    fn run(p: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> i64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            pc += 1;
            match i.code {
                LDX_W => r[dst] = i64::from(ctx[usize::try_from(i.off).unwrap() / 4]),
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i64::from(i.imm),
                AND64_K => r[dst] &= i64::from(i.imm),
                RSH64_K => r[dst] >>= i.imm,
                JNE_K if r[dst] != i64::from(i.imm) => pc += usize::try_from(i.off).unwrap(),
                JEQ_K if r[dst] == i64::from(i.imm) => pc += usize::try_from(i.off).unwrap(),
                JNE_K | JEQ_K => {}
                EXIT => return r[0],
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    fn rule(allow: bool, t: LinuxDeviceType, maj: i64, min: i64, acc: &str) -> LinuxDeviceCgroup {
        LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .major(maj)
            .minor(min)
            .access(acc)
            .build()
            .unwrap()
    }

    #[test]
    fn program_semantics() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let rules = vec![
            deny_all,
            rule(true, LinuxDeviceType::C, 10, 229, "rw"),
            rule(false, LinuxDeviceType::C, 1, 9, "w"),
        ];
        let (def, list) = effective_rules(&rules).unwrap();
        assert!(!def);
        let p = program(def, &list).unwrap();
        // fuse read+write allowed, its neighbour not; mknod of any char
        // device comes from the defaults ("c *:* m").
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 10, 229), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 10, 230), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 10, 230), 1);
        // Defaults: /dev/null allowed; block devices only mknod.
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 7, 0), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 7, 0), 1);
        // The later deny of writes to urandom overrides the default allow.
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 9), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 9), 0);
        // Anything else is denied.
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 4, 1), 0);

        let (def, list) =
            effective_rules(&[rule(false, LinuxDeviceType::B, 8, -1, "rwm")]).unwrap();
        let p = program(def, &list).unwrap();
        assert!(def);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 16), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 8, 16), 1);
        assert!(effective_rules(&[rule(true, LinuxDeviceType::P, 1, 1, "r")]).is_err());

        // An allow of "r" does not cover a read+write open.
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .unwrap();
        let rules = [deny_all, rule(true, LinuxDeviceType::B, 7, 0, "r")];
        let (def, list) = effective_rules(&rules).unwrap();
        let p = program(def, &list).unwrap();
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 7, 0), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ | ACC_WRITE, 7, 0), 0);
    }
}
