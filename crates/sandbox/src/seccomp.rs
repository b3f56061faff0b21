//! System call filters, compiled with seccompiler in the launching process and installed by the
//! program's process as its very last step before execve.
//!
//! # The default policy
//!
//! Allow everything except what the docker/podman default profiles deny, which fails with
//! EPERM (so programs see an ordinary "not permitted" rather than dying). Reasons per group
//! are next to the list in [`default_rules`]. `clone3` fails with ENOSYS instead, so that libc
//! falls back to `clone`, whose flags a filter can inspect (clone3 passes them in memory).
//!
//! # Profile files
//!
//! `SeccompPolicy::Profile(path)` reads a JSON document:
//!
//! ```json
//! {
//!   "default": "allow",
//!   "syscalls": [
//!     { "names": ["ptrace", "bpf"], "action": "errno", "errno": 1 },
//!     { "names": ["reboot"], "action": "kill" }
//!   ]
//! }
//! ```
//!
//! `default` and `action` are `allow`, `errno` (with `errno`, default 1 = EPERM) or `kill`
//! (the whole process). `default` may also be an object `{"action": "errno", "errno": 38}`.
//! Names are the kernel's system call names for the running architecture (x86_64 or aarch64);
//! an unknown name, an unknown field or a name listed twice is an error. Argument conditions
//! are not supported.
//!
//! Each distinct action becomes one small filter (seccompiler filters have a single match
//! action); the kernel runs all installed filters and the most restrictive verdict wins, so
//! the stack behaves as one table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};
use serde::Deserialize;

use crate::error::{Error, Fail};
use crate::spec::SeccompPolicy;
use crate::sys;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "riscv64")]
const ARCH: TargetArch = TargetArch::riscv64;

/// `AUDIT_ARCH_*` of [`ARCH`] (`seccomp_data.arch`): EM_* | 64-bit | little-endian.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 243 | 0x8000_0000 | 0x4000_0000;

/// Compiles the filters for `policy`, in installation order (empty = unconfined).
pub(crate) fn compile(policy: &SeccompPolicy) -> Result<Vec<BpfProgram>, Error> {
    match policy {
        SeccompPolicy::Unconfined => Ok(Vec::new()),
        SeccompPolicy::Default => compile_default().map_err(|e| Error::Seccomp(e.to_string())),
        SeccompPolicy::Profile(path) => compile_profile_file(path),
    }
}

fn compile_default() -> Result<Vec<BpfProgram>, seccompiler::BackendError> {
    let deny = SeccompFilter::new(
        default_rules()?,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )?;
    let deny: BpfProgram = deny.try_into()?;
    Ok(vec![with_errno_prelude(
        libc::SYS_clone3,
        libc::ENOSYS as u32,
        deny,
    )])
}

/// One program instead of two (the kernel checks, converts and JITs each installed program:
/// about 0.1 ms apiece): a prelude answering syscall `nr` of this architecture with `errno`,
/// then `rest` unchanged. Its jumps are relative, so they hold after the prelude; a call of
/// another architecture goes straight to `rest`, which decides about it.
fn with_errno_prelude(nr: i64, errno: u32, rest: BpfProgram) -> BpfProgram {
    const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    // Offsets in struct seccomp_data.
    const NR: u32 = 0;
    const ARCH_OFFSET: u32 = 4;
    let op = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    let mut prog = vec![
        op(LD_ABS, ARCH_OFFSET, 0, 0),
        op(JEQ, AUDIT_ARCH, 0, 3), // another architecture: on to `rest`
        op(LD_ABS, NR, 0, 0),
        op(JEQ, nr as u32, 0, 1), // not `nr`: on to `rest`
        op(
            RET,
            libc::SECCOMP_RET_ERRNO | (errno & libc::SECCOMP_RET_DATA),
            0,
            0,
        ),
    ];
    prog.extend(rest);
    prog
}

fn arg_eq_mask(arg: u8, mask: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(mask),
        mask,
    )
}

/// The syscalls the default policy denies, with conditions where only some uses are denied.
fn default_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let always = [
        // Kernel keyrings are not namespaced: a sandbox could read or poison host keys.
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        // eBPF and perf expose kernel memory layout and a large attack surface.
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        // Tracing and cross-process memory access would let a program escape its own policy.
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        // Loading kernels or modules is kernel code execution.
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        // The mount tree is the sandbox: reshaping it from inside (even in its own user
        // namespace) could uncover what the root hides.
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_fsconfig,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        // Host-wide state: swap, reboot, kernel log, process accounting, quotas.
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_syslog,
        libc::SYS_acct,
        libc::SYS_quotactl,
        // The clocks are shared with the host (the time namespace only offsets monotonic).
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        // userfaultfd makes kernel races easy to win; handles bypass path-based confinement.
        libc::SYS_userfaultfd,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        // Obsolete or terminal-stealing calls nothing legitimate in a sandbox needs.
        libc::SYS_lookup_dcookie,
        libc::SYS_vhangup,
        // Joining other namespaces would leave the sandbox.
        libc::SYS_setns,
    ];
    for nr in always {
        rules.insert(nr, vec![]);
    }
    #[cfg(target_arch = "x86_64")]
    for nr in [
        // Port I/O and a.out loading exist only on x86.
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
    ] {
        rules.insert(nr, vec![]);
    }
    // New user namespaces regain every capability inside them: the gateway to most kernel
    // exploits. Other namespace flags stay allowed (they need privileges the program lacks).
    let newuser = libc::CLONE_NEWUSER as u64;
    rules.insert(
        libc::SYS_unshare,
        vec![SeccompRule::new(vec![arg_eq_mask(0, newuser)?])?],
    );
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![arg_eq_mask(0, newuser)?])?],
    );
    // TIOCSTI pushes input into a terminal (typing commands into the caller's shell) and
    // TIOCLINUX can do the same on a virtual console. ioctl's request is an int in the kernel,
    // so comparing the low 32 bits catches high-bit aliases too.
    let ioctl = [0x5412u64, 0x541C]
        .into_iter()
        .map(|req| {
            let cond = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req)?;
            SeccompRule::new(vec![cond])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl);
    // personality: only the values docker allows (Linux, UNAME26, their 32-bit variants and
    // the query 0xffffffff); others can disable ASLR (ADDR_NO_RANDOMIZE) and similar.
    let allowed = [0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff];
    let conds = allowed
        .into_iter()
        .map(|v| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, v))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_personality, vec![SeccompRule::new(conds)?]);
    Ok(rules)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    default: ActionSpec,
    #[serde(default)]
    syscalls: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ActionSpec {
    Name(ActionName),
    Full {
        action: ActionName,
        #[serde(default)]
        errno: Option<u32>,
    },
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
enum ActionName {
    Allow,
    Errno,
    Kill,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    names: Vec<String>,
    action: ActionName,
    #[serde(default)]
    errno: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Action {
    Allow,
    Errno(u32),
    Kill,
}

impl Action {
    fn new(name: ActionName, errno: Option<u32>) -> Action {
        match name {
            ActionName::Allow => Action::Allow,
            ActionName::Errno => Action::Errno(errno.unwrap_or(libc::EPERM as u32)),
            ActionName::Kill => Action::Kill,
        }
    }

    fn json(self) -> serde_json::Value {
        match self {
            Action::Allow => "allow".into(),
            Action::Errno(e) => serde_json::json!({ "errno": e }),
            Action::Kill => "kill_process".into(),
        }
    }
}

fn compile_profile_file(path: &Path) -> Result<Vec<BpfProgram>, Error> {
    let fail = |reason: String| Error::SeccompProfile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    compile_profile(&text).map_err(fail)
}

/// Compiles profile text; the error is the reason alone (the caller adds the path).
fn compile_profile(text: &str) -> Result<Vec<BpfProgram>, String> {
    let profile: Profile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let default = match profile.default {
        ActionSpec::Name(n) => Action::new(n, None),
        ActionSpec::Full { action, errno } => Action::new(action, errno),
    };
    // Group names by action, refusing duplicates (which entry would win is not obvious).
    let mut seen = HashSet::new();
    let mut groups: HashMap<Action, Vec<String>> = HashMap::new();
    let mut listed = Vec::new();
    for entry in profile.syscalls {
        let action = Action::new(entry.action, entry.errno);
        for name in entry.names {
            if !seen.insert(name.clone()) {
                return Err(format!("syscall \"{name}\" is listed twice"));
            }
            if action != default {
                listed.push(name.clone());
                groups.entry(action).or_default().push(name);
            }
        }
    }
    // One filter applies the default to everything not listed; one per other non-allow action
    // applies that action to its names. The kernel takes the most restrictive verdict.
    let mut json = serde_json::Map::new();
    let rule_list = |names: &[String]| -> Vec<serde_json::Value> {
        names
            .iter()
            .map(|n| serde_json::json!({ "syscall": n }))
            .collect()
    };
    if default != Action::Allow {
        json.insert(
            "0-default".into(),
            serde_json::json!({
                "mismatch_action": default.json(),
                "filter_action": "allow",
                "filter": rule_list(&listed),
            }),
        );
    }
    let mut actions: Vec<_> = groups
        .keys()
        .copied()
        .filter(|a| *a != Action::Allow)
        .collect();
    actions.sort_by_key(|a| format!("{a:?}"));
    for (i, action) in actions.iter().enumerate() {
        json.insert(
            format!("{}-group", i + 1),
            serde_json::json!({
                "mismatch_action": "allow",
                "filter_action": action.json(),
                "filter": rule_list(&groups[action]),
            }),
        );
    }
    if json.is_empty() {
        return Ok(Vec::new());
    }
    let doc = serde_json::Value::Object(json).to_string();
    let mut compiled =
        seccompiler::compile_from_json(doc.as_bytes(), ARCH).map_err(|e| describe(&e))?;
    let mut names: Vec<String> = compiled.keys().cloned().collect();
    names.sort();
    Ok(names
        .into_iter()
        .filter_map(|n| compiled.remove(&n))
        .collect())
}

/// seccompiler's JSON errors are not matchable types; keep its message but make the usual
/// one (an unknown name) read like ours.
fn describe(err: &seccompiler::Error) -> String {
    let text = err.to_string();
    match text.split_once("Invalid syscall name: ") {
        Some((_, rest)) => {
            let name = rest.split(" for given arch").next().unwrap_or(rest);
            format!("unknown syscall \"{name}\" on {ARCH:?}")
        }
        None => text.trim_end_matches('.').to_string(),
    }
}

/// Installs the filters (no_new_privs must already be set). Called right before execve.
pub(crate) fn install(filters: &[BpfProgram]) -> Result<(), Fail<'static>> {
    for filter in filters {
        let prog = libc::sock_fprog {
            len: filter.len() as libc::c_ushort,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prog points at a live BPF program of `len` instructions; the kernel copies it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(Fail::bare("install seccomp filter", sys::errno()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_policy_compiles_to_one_program() {
        let filters = compile(&SeccompPolicy::Default).unwrap();
        assert_eq!(filters.len(), 1);
        assert!(filters[0].len() > 5);
    }

    /// Runs classic BPF as the kernel would, for the instructions these programs use.
    fn verdict(prog: &[sock_filter], nr: i64, arch: u32) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &prog[pc];
            pc += 1;
            match i.code as u32 {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    acc = match i.k {
                        0 => nr as u32,
                        4 => arch,
                        _ => 0, // arguments: zero in these probes
                    }
                }
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += usize::from(if acc == i.k { i.jt } else { i.jf });
                }
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= i.k,
                c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => {
                    pc += usize::from(if acc > i.k { i.jt } else { i.jf });
                }
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => {
                    pc += usize::from(if acc >= i.k { i.jt } else { i.jf });
                }
                other => panic!("instruction {other:#x} not modelled"),
            }
        }
    }

    #[test]
    fn merged_default_program_answers_like_the_two_filters() {
        let prog = &compile(&SeccompPolicy::Default).unwrap()[0];
        let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e as u32;
        assert_eq!(
            verdict(prog, libc::SYS_clone3, AUDIT_ARCH),
            errno(libc::ENOSYS)
        );
        assert_eq!(
            verdict(prog, libc::SYS_mount, AUDIT_ARCH),
            errno(libc::EPERM)
        );
        assert_eq!(verdict(prog, libc::SYS_bpf, AUDIT_ARCH), errno(libc::EPERM));
        assert_eq!(
            verdict(prog, libc::SYS_read, AUDIT_ARCH),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            verdict(prog, libc::SYS_execve, AUDIT_ARCH),
            libc::SECCOMP_RET_ALLOW
        );
        // Another architecture never reaches the clone3 answer: the rest kills it.
        let other = verdict(prog, libc::SYS_clone3, 0x4000_0003);
        assert_ne!(other, errno(libc::ENOSYS));
        assert_ne!(other, libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn unconfined_has_no_filter() {
        assert!(compile(&SeccompPolicy::Unconfined).unwrap().is_empty());
    }

    #[test]
    fn profile_groups_actions_into_filters() {
        let text = r#"{"default": "errno", "syscalls": [
            {"names": ["read", "write", "exit_group"], "action": "allow"},
            {"names": ["reboot"], "action": "kill"}]}"#;
        assert_eq!(compile_profile(text).unwrap().len(), 2);
        let allow_all = r#"{"default": "allow"}"#;
        assert!(compile_profile(allow_all).unwrap().is_empty());
    }

    #[test]
    fn unknown_syscall_name_is_a_clear_error() {
        let text = r#"{"default": "allow", "syscalls": [{"names": ["fly"], "action": "errno"}]}"#;
        let err = compile_profile(text).unwrap_err();
        assert!(err.starts_with("unknown syscall \"fly\""), "{err}");
    }

    #[test]
    fn duplicate_names_and_unknown_fields_are_errors() {
        let dup = r#"{"default": "allow", "syscalls": [
            {"names": ["bpf"], "action": "errno"}, {"names": ["bpf"], "action": "kill"}]}"#;
        assert!(compile_profile(dup).unwrap_err().contains("listed twice"));
        let unknown = r#"{"default": "allow", "sycalls": []}"#;
        assert!(
            compile_profile(unknown)
                .unwrap_err()
                .contains("unknown field")
        );
    }

    #[test]
    fn missing_profile_file_names_the_path() {
        let err = compile(&SeccompPolicy::Profile("/nonexistent/p.json".into())).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("sandbox: seccomp profile /nonexistent/p.json: ")
        );
    }

    proptest! {
        #[test]
        fn any_subset_of_known_names_compiles(mask in 0u32..64, errno in 1u32..100) {
            let names = ["read", "bpf", "ptrace", "keyctl", "mount", "reboot"];
            let chosen: Vec<&str> = names.iter().enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| *n).collect();
            let text = serde_json::json!({
                "default": "allow",
                "syscalls": [{"names": chosen, "action": "errno", "errno": errno}],
            }).to_string();
            let filters = compile_profile(&text).unwrap();
            prop_assert_eq!(filters.len(), usize::from(!chosen.is_empty()));
        }
    }
}
