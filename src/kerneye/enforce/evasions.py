"""Bypass techniques tried against kerneye's enforcement, and what happens.

Pure data, rendered into the docs. Each entry names the kernel test that
shows the outcome on a real kernel (tests/kernel/test_enforce_evasion.py):
"blocked" entries assert the errno a real process gets; "out of scope"
entries assert that the technique works today, so the day it stops working
the test fails and this table must be updated.

Mechanisms: "fanotify" is kerneye.enforce.fanotify (inode, filesystem and
mount marks answered from user space); "cgroup-bpf" is
kerneye.enforce.cgroup_net (cgroup connect/sendmsg/bind hooks).
"""
from __future__ import annotations

from dataclasses import dataclass

OUTCOMES = ("blocked", "out of scope")


@dataclass(frozen=True)
class Evasion:
    operation: str   # "exec", "open" or "connect"
    technique: str   # what the attacker does
    outcome: str     # "blocked" or "out of scope"
    mechanism: str   # what decides (or would have to)
    reason: str      # why it is blocked, or why it is not
    test: str        # the test in tests/kernel/test_enforce_evasion.py

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


EVASIONS: tuple[Evasion, ...] = (
    # --- exec deny -------------------------------------------------------------
    Evasion("exec", "copy the denied binary and run the copy", "blocked", "fanotify content rule",
            "deny_exec(match_content=True) also marks every executable filesystem (FAN_MARK_FILESYSTEM) and "
            "compares the sha256 of each executed file, read through the event's descriptor",
            "test_exec_copy_is_blocked_by_content_hash"),
    Evasion("exec", "copy the binary and change one byte (or append data)", "out of scope", "fanotify content rule",
            "a different content is a different program as far as a hash can tell; only an allow list "
            "(exec_allowlist) stops unknown programs",
            "test_exec_modified_copy_runs"),
    Evasion("exec", "hard link to the denied binary", "blocked", "fanotify inode mark",
            "a hard link is the same inode, and the mark is on the inode", "test_exec_hard_link_is_blocked"),
    Evasion("exec", "symlink to the denied binary", "blocked", "fanotify inode mark",
            "the kernel resolves the symlink; the opened inode is the marked one", "test_exec_symlink_is_blocked"),
    Evasion("exec", "rename the denied binary", "blocked", "fanotify inode mark",
            "a rename keeps the inode", "test_exec_rename_is_blocked"),
    Evasion("exec", "relative path (./x after chdir)", "blocked", "fanotify inode mark",
            "the decision is on the inode, not on the path string", "test_exec_relative_path_is_blocked"),
    Evasion("exec", "execveat(fd, \"\", AT_EMPTY_PATH) or exec of /proc/self/fd/N", "blocked",
            "fanotify inode mark", "the exec still opens the same inode for execution",
            "test_exec_through_proc_self_fd_and_fexecve_is_blocked"),
    Evasion("exec", "copy into a memfd and fexecve it", "out of scope", "BPF-LSM bprm_check_security",
            "a memfd lives on the kernel's internal shmem mount, which fanotify refuses to mark (EINVAL), and "
            "is a new inode; the BPF-LSM back end sees every exec, including this one",
            "test_exec_memfd_runs_under_fanotify"),
    Evasion("exec", "run a denied script through its interpreter (sh script)", "out of scope",
            "fanotify open rule",
            "the interpreter only opens and reads the script; an exec rule covers execve. Deny opening "
            "the script as well (next entry)", "test_exec_script_through_interpreter_runs"),
    Evasion("exec", "run a denied script through its interpreter, with an open rule on the script", "blocked",
            "fanotify inode mark (FAN_OPEN_PERM)", "the interpreter cannot open the script",
            "test_exec_script_through_interpreter_blocked_by_open_rule"),
    Evasion("exec", "run a denied ELF binary through the dynamic loader (ld.so ./x)", "out of scope",
            "fanotify open rule",
            "ld.so opens and mmaps the binary; no execve of it happens. Deny opening it too to block this",
            "test_exec_through_dynamic_loader"),
    # --- file open deny --------------------------------------------------------------
    Evasion("open", "symlink to the denied file", "blocked", "fanotify inode mark",
            "the kernel resolves the symlink to the marked inode", "test_open_symlink_is_blocked"),
    Evasion("open", "hard link to the denied file", "blocked", "fanotify inode mark",
            "same inode", "test_open_hard_link_is_blocked"),
    Evasion("open", "bind mount the file elsewhere (private mount namespace)", "blocked", "fanotify inode mark",
            "a bind mount shows the same inode", "test_open_bind_mount_in_private_namespace_is_blocked"),
    Evasion("open", "rename the parent directory", "blocked", "fanotify inode mark",
            "the inode does not change", "test_open_after_renaming_the_parent_is_blocked"),
    Evasion("open", "openat() relative to a directory descriptor", "blocked", "fanotify inode mark",
            "the decision is on the opened inode, whatever the lookup", "test_open_with_dirfd_is_blocked"),
    Evasion("open", "open(O_PATH), then reopen /proc/self/fd/N", "blocked", "fanotify inode mark",
            "the O_PATH open reads nothing; the reopen is a real open of the marked inode",
            "test_open_o_path_reopen_is_blocked"),
    Evasion("open", "hard link a file out of a denied directory", "out of scope", "BPF-LSM file_open",
            "directory and recursive rules follow the parent directory (as a path prefix would); a hard link "
            "elsewhere has another parent. Deny the file itself (an inode rule) to cover all its names",
            "test_open_hard_link_out_of_a_directory_rule"),
    # --- connect deny ------------------------------------------------------------------
    Evasion("connect", "IPv4-mapped IPv6 address (::ffff:127.0.0.1) on an AF_INET6 socket", "blocked",
            "cgroup-bpf connect6", "mapped addresses are matched against the IPv4 rules",
            "test_connect_ipv4_mapped_ipv6_is_blocked"),
    Evasion("connect", "UDP sendto() to a denied address, without connect()", "blocked", "cgroup-bpf sendmsg4/6",
            "the sendmsg hooks check every datagram's destination", "test_udp_sendto_is_blocked"),
    Evasion("connect", "reach the same host over the other address family (IPv6 when only IPv4 is listed)",
            "out of scope", "the rule's CIDRs",
            "a rule matches the addresses it lists; ::1 is not 127.0.0.1. List both families: a rule with "
            "both blocks both", "test_connect_over_an_unlisted_family_is_allowed"),
    Evasion("connect", "the other address family, with a rule listing both", "blocked", "cgroup-bpf connect4/6",
            "both addresses are in the rule", "test_connect_rule_listing_both_families_blocks_both"),
)
