//! The system calls the tracer needs that std does not wrap: reading an extended attribute of
//! the overlay's upper directory, mounting the overlay in a private mount namespace of the
//! child process just before it executes the tracer, the parent-death signal, keeping a traced
//! run on one CPU, and setting a symlink's times.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The value of extended attribute `name` of `path` (not following a symlink), if it has one
/// of at most 64 bytes.
pub fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated and outlive the call; the buffer's length is
    // passed with it.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

/// Sets the modification and access times of `path` (not following a symlink) to the epoch.
pub fn zero_times(path: &Path) -> std::io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    ];
    // SAFETY: a NUL-terminated path and a two-element array, both alive for the call.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes `cmd`'s child die when the thread that started it dies (a killed build leaves no
/// tracer running).
pub fn die_with_thread(cmd: &mut Command) {
    // SAFETY: between fork and exec the closure makes one system call; it allocates nothing
    // and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `cmd`'s child enter a new mount namespace (private propagation, so nothing leaks to
/// the host and everything goes when the process tree exits) and mount an overlayfs with
/// `opts` on `merged` before it executes. The child is killed if the thread that started it
/// dies (a killed build leaves no tracer running).
pub fn mount_overlay_before_exec(cmd: &mut Command, opts: CString, merged: CString) {
    // SAFETY: between fork and exec the closure makes four system calls on memory allocated
    // before the fork (the two C strings it owns and static literals); it allocates nothing
    // and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
                || libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                || libc::mount(
                    c"overlay".as_ptr(),
                    merged.as_ptr(),
                    c"overlay".as_ptr(),
                    0,
                    opts.as_ptr().cast(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Keeps `cmd`'s child, and so the tracer and every process it traces, on one CPU of those this
/// process may use, taken in turn so that traced runs side by side get different CPUs.
///
/// Every traced system call stops the program until strace has looked at it. On these virtual
/// machines a stop whose tracer sleeps on another CPU cost ~105 µs (measured; an
/// inter-processor wakeup each way is the likely reason); with both on one CPU ~11 µs
/// (docs/tracing.md, "Why strace"). A traced
/// program loses its parallelism, which the scripts nosa traces barely have.
pub fn keep_on_one_cpu(cmd: &mut Command) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size into it.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the set is a valid, writable cpu_set_t of the size passed.
    let ok = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) == 0
    };
    if !ok {
        return;
    }
    // SAFETY: CPU_ISSET reads the set within its bounds (i < CPU_SETSIZE).
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &allowed) })
        .collect();
    if cpus.len() < 2 {
        return;
    }
    let cpu = cpus[NEXT.fetch_add(1, Ordering::Relaxed) % cpus.len()];
    // SAFETY: as above; CPU_SET writes within the set's bounds.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut one) };
    // SAFETY: between fork and exec the closure makes one system call on a set copied into it
    // before the fork; it allocates nothing and takes no lock. A failure leaves the child
    // where it was, which is only slower.
    unsafe {
        cmd.pre_exec(move || {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
            Ok(())
        });
    }
}
