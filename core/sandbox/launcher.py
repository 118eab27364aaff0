"""First code to run inside the sandbox: lock the process down, then run the user's program in-process.

This file is executed by the sandbox's own interpreter (``python3 -I launcher.py CONFIG``), never imported by the
host, so it uses the standard library only. It adds three layers on top of the namespaces that bubblewrap set up:

1. resource limits (address space, CPU seconds, processes, file size, open files, no core dumps), made hard so the
   program cannot raise them again;
2. a seccomp filter (through the system's ``libseccomp.so.2``) that refuses ``execve`` (no other programs can be
   started), sockets other than AF_UNIX, ``ptrace``, mounts, new namespaces, kernel keyrings, BPF, module loading and
   similar calls with ``EPERM``;
3. a Python audit hook that turns the same attempts into a ``PermissionError("sandbox: ...")`` with a readable
   reason *before* they reach the kernel. The hook only explains; the kernel layers above are the boundary.

Exit status 121 with a line starting ``ragent-sandbox:`` on stderr means the lock-down itself failed; the host then
fails closed (raises) instead of running code unprotected.
"""

from __future__ import annotations

import json
import os
import resource
import sys

SETUP_FAILED = 121
WORK = "/work"
WRITABLE = ("/work", "/tmp", "/dev/null")

DENIED_SYSCALLS = (
    "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
    "chroot", "unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
    "acct", "quotactl", "syslog", "settimeofday", "clock_settime", "adjtimex", "iopl", "ioperm",
    "open_by_handle_at", "name_to_handle_at", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init", "lookup_dcookie", "vhangup", "personality", "mknod", "mknodat",
)

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_CMP_NE = 1
_SCMP_CMP_MASKED_EQ = 7
_EPERM = 1
_ENOSYS = 38
_AF_UNIX = 1
_CLONE_NEWUSER = 0x10000000


def _fail(message: str) -> None:
    sys.stderr.write(f"ragent-sandbox: setup failed: {message}\n")
    sys.stderr.flush()
    os._exit(SETUP_FAILED)


def _set_limits(cfg: dict[str, int]) -> None:
    limits = {
        resource.RLIMIT_AS: cfg["memory_bytes"],
        resource.RLIMIT_CPU: cfg["cpu_seconds"],
        resource.RLIMIT_NPROC: cfg["max_processes"],
        resource.RLIMIT_FSIZE: cfg["max_file_bytes"],
        resource.RLIMIT_NOFILE: cfg["max_open_files"],
        resource.RLIMIT_CORE: 0,
    }
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))


def _install_seccomp() -> None:
    import ctypes

    class ArgCmp(ctypes.Structure):
        _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64))

    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError as exc:
        _fail(f"libseccomp.so.2 not found inside the sandbox ({exc}); install the libseccomp2 package")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
    lib.seccomp_load.argtypes = (ctypes.c_void_p,)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)

    ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        _fail("seccomp_init failed")
    deny = _SCMP_ACT_ERRNO | _EPERM
    for name in DENIED_SYSCALLS:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:  # not a system call on this architecture
            continue
        if lib.seccomp_rule_add_array(ctx, deny, nr, 0, None) != 0:
            _fail(f"seccomp rule for {name} rejected")
    # Sockets: only AF_UNIX (socketpair, used by some standard modules); the network namespace has no interfaces
    # anyway, this keeps even raw/netlink sockets out.
    not_unix = ArgCmp(0, _SCMP_CMP_NE, _AF_UNIX, 0)
    for name in ("socket", "socketpair"):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0 and lib.seccomp_rule_add_array(ctx, deny, nr, 1, ctypes.byref(not_unix)) != 0:
            _fail(f"seccomp rule for {name} rejected")
    # No new user namespace (the door to every other namespace) even where bwrap lacks --disable-userns. clone3
    # passes its flags in memory that seccomp cannot read, so it answers ENOSYS and the C library falls back to clone.
    new_user = ArgCmp(0, _SCMP_CMP_MASKED_EQ, _CLONE_NEWUSER, _CLONE_NEWUSER)
    nr = lib.seccomp_syscall_resolve_name(b"clone")
    if nr >= 0 and lib.seccomp_rule_add_array(ctx, deny, nr, 1, ctypes.byref(new_user)) != 0:
        _fail("seccomp rule for clone rejected")
    nr = lib.seccomp_syscall_resolve_name(b"clone3")
    if nr >= 0 and lib.seccomp_rule_add_array(ctx, _SCMP_ACT_ERRNO | _ENOSYS, nr, 0, None) != 0:
        _fail("seccomp rule for clone3 rejected")
    if lib.seccomp_load(ctx) != 0:
        _fail("seccomp_load failed")
    lib.seccomp_release(ctx)


def _writes(mode: object, flags: object) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    if isinstance(flags, int):
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
    return False


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + "/") for r in roots)


def _audit(event: str, args: tuple[object, ...]) -> None:
    # Explanations for the usual attempts; the kernel refuses them anyway (see the module docstring).
    if event in ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen", "pty.spawn"):
        raise PermissionError(f"sandbox: starting other programs is not allowed ({event})")
    if event == "socket.__new__" and len(args) > 1 and args[1] not in (_AF_UNIX, -1):
        raise PermissionError("sandbox: network access is not allowed (socket)")
    if event in ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"):
        raise PermissionError(f"sandbox: network access is not allowed ({event})")
    if event == "ctypes.dlopen":
        raise PermissionError("sandbox: loading native libraries with ctypes is not allowed")
    if event == "open" and args:
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, str) and _writes(args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else None):
            full = os.path.normpath(os.path.join(os.getcwd(), path))
            if not _inside(full, WRITABLE):
                raise PermissionError(f"sandbox: writing outside the work folder is not allowed: {full}")


def _run_user_program(path: str) -> None:
    import runpy
    import traceback

    sys.argv = [path]
    sys.path.insert(0, WORK)
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as exc:
        # Show the user's frames only, as `python main.py` would (not runpy's, nor the audit hook's).
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__ and "runpy" not in f.filename]
        sys.stderr.write("Traceback (most recent call last):\n")
        sys.stderr.write("".join(traceback.format_list(frames)))
        sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
        sys.stderr.flush()
        sys.exit(1)


def main() -> None:
    """Entry point inside the sandbox: ``launcher.py '{"memory_bytes": ..., ...}' /work/main.py``."""
    try:
        cfg = json.loads(sys.argv[1])
        program = sys.argv[2]
    except (IndexError, ValueError) as exc:
        _fail(f"bad launcher arguments: {exc}")
    try:
        _install_seccomp()
        _set_limits(cfg)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    # ctypes was needed for the set-up only: dropping it means `import ctypes` re-runs and hits the audit hook.
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith("ctypes.")]:
        del sys.modules[name]
    sys.addaudithook(_audit)
    _run_user_program(program)


if __name__ == "__main__":
    main()
