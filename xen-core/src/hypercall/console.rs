//! `console_io`: the domain's raw console (`CONSOLEIO_write`, `CONSOLEIO_read`).
//!
//! Xen writes dom0's bytes straight to the serial line. Other domains may not use it: Xen's
//! default XSM policy (`xsm_console_io`) refuses them with -EPERM in release builds (only debug
//! builds let them write), so a domU's console is its console ring, served by dom0. Guest bytes
//! are copied in bounded chunks through the checked guest copy, so a bad pointer anywhere in the
//! buffer is -EFAULT and nothing past it is read; between chunks a long write may be preempted
//! and continued, as Xen's `guest_console_write` is.

use hypercall_abi::errno::Errno;
use hypercall_abi::xen::{CONSOLEIO_read, CONSOLEIO_write};

use crate::ctx::{Ctx, HcResult, Machine};
use crate::guest_access::GuestMemory;

/// Bytes copied from the guest per step (Xen uses 128).
const CHUNK: usize = 128;

pub(super) fn console_io<M: Machine + ?Sized>(
    ctx: &mut Ctx<'_, M>,
    cmd: u64,
    count: u64,
    buf: u64,
) -> HcResult {
    if !ctx.dom.privileged {
        return Err(Errno::EPERM);
    }
    // Xen takes `count` as an unsigned int.
    let count = count as u32 as usize;
    match crate::ctx::cmd32(cmd) {
        CONSOLEIO_write => {
            let mut chunk = [0u8; CHUNK];
            let mut done = 0usize;
            while done < count {
                // `guest_console_write`: `if ( kcount && hypercall_preempt_check() )`, continue
                // with the rest ("iih": the command, the bytes left, the buffer advanced).
                if done > 0 && ctx.preempt_check() {
                    return ctx.create_continuation(&[
                        u64::from(CONSOLEIO_write),
                        (count - done) as u64,
                        buf.wrapping_add(done as u64),
                    ]);
                }
                let n = CHUNK.min(count - done);
                ctx.guest()
                    .read(buf.wrapping_add(done as u64), &mut chunk[..n])?;
                ctx.m.console_write(&chunk[..n]);
                done += n;
            }
            Ok(0)
        }
        CONSOLEIO_read => {
            let mut chunk = [0u8; CHUNK];
            let n = ctx.m.console_read(&mut chunk[..CHUNK.min(count)]);
            ctx.guest().write(buf, &chunk[..n])?;
            Ok(n as i64)
        }
        _ => Err(Errno::ENOSYS),
    }
}
