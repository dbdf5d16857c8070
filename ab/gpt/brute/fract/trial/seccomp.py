"""The seccomp filter of every process in a jail, built with libseccomp (through ctypes) and handed to
bwrap as a BPF program (`--seccomp FD`).

A deny-list in the manner of the container runtimes' default profiles (Docker/containerd, nsjail): calls
that reach state outside the trial or the kernel's own configuration fail with EPERM: the kernel keyrings,
tracing and BPF, namespaces and mounts, modules, clocks, swap, reboot, io_uring, userfaultfd,
perf events. clone with a namespace flag fails with EPERM too, and clone3 with ENOSYS (its flags lie in
memory a filter cannot read; the C library then falls back to clone). Syscalls of another architecture
(32-bit entry on a 64-bit kernel) kill the process (libseccomp's default for a foreign architecture).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os

DENY = (
    # kernel keyrings: a key outlives the process and the jail
    "add_key", "request_key", "keyctl",
    # tracing, BPF, performance counters, page-fault handling from user space
    "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open", "userfaultfd",
    "kcmp", "lookup_dcookie", "fanotify_init", "name_to_handle_at", "open_by_handle_at",
    # namespaces and mounts
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount",
    "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree_attr",
    # kernel modules, kexec, reboot, swap, accounting, quotas
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
    "swapoff", "acct", "quotactl", "quotactl_fd", "nfsservctl", "syslog", "vhangup", "uselib", "personality",
    # clocks
    "clock_settime", "clock_settime64", "settimeofday", "adjtimex", "clock_adjtime", "clock_adjtime64", "stime",
    # io_uring (not used by torch)
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # the rest of Docker's list
    "iopl", "ioperm", "create_module", "get_kernel_syms", "query_module", "sysfs", "_sysctl", "ustat",
    "vm86", "vm86old", "get_mempolicy", "set_mempolicy", "mbind", "move_pages",
)
CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
                    0x00000080)  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7


def _errno(e: int) -> int:
    return 0x00050000 | (e & 0xFFFF)  # SCMP_ACT_ERRNO


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class SeccompUnavailable(OSError):
    """No filter can be built here (the reason is the message)."""


@functools.lru_cache(maxsize=None)
def program() -> bytes:
    """The filter as a raw BPF program (what bwrap --seccomp reads)."""
    name = ctypes.util.find_library("seccomp")
    if name is None:
        raise SeccompUnavailable("libseccomp is not installed (apt-get install libseccomp2)")
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        def rule(action: int, call: str, cmps: list[_ArgCmp] = ()) -> None:
            nr = lib.seccomp_syscall_resolve_name(call.encode())
            if nr < 0:  # not a syscall on this architecture
                return
            arr = (_ArgCmp * max(1, len(cmps)))(*cmps)
            rc = lib.seccomp_rule_add_array(ctypes.c_void_p(ctx), action, nr, len(cmps), arr)
            if rc < 0:
                raise SeccompUnavailable(f"libseccomp refused the rule for {call} ({os.strerror(-rc)})")

        for call in DENY:
            rule(_errno(errno.EPERM), call)
        for flag in CLONE_NAMESPACES:
            rule(_errno(errno.EPERM), "clone", [_ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag)])
        rule(_errno(errno.ENOSYS), "clone3")
        fd = os.memfd_create("jail-seccomp-export", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctypes.c_void_p(ctx), fd)
            if rc < 0:
                raise SeccompUnavailable(f"seccomp_export_bpf failed ({os.strerror(-rc)})")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctypes.c_void_p(ctx))


def program_fd() -> int:
    """A fresh read descriptor of the program for one bwrap start (bwrap reads it to the end)."""
    data = program()
    fd = os.memfd_create("jail-seccomp", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
