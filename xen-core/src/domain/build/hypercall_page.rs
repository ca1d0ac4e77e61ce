//! The hypercall page of a 64-bit PV guest: one 32-byte `syscall` stub per hypercall number.
//!
//! Byte for byte what Xen 4.17 writes: `init_hypercall_page` fills the page with `int3` (0xcc),
//! then `pv_ring3_init_hypercall_page` (`xen/arch/x86/pv/hypercall.c`) writes, for each of the
//! 128 slots `i`,
//!
//! ```text
//! 51                 push %rcx
//! 41 53              push %r11
//! b8 <i as le32>     mov  $i, %eax
//! 0f 05              syscall
//! 41 5b              pop  %r11
//! 59                 pop  %rcx
//! c3                 ret
//! ```
//!
//! except slot 23 (`__HYPERVISOR_iret`), which guests jump to rather than call, and which never
//! returns: `push %rcx; push %r11; push %rax; mov $23, %eax; syscall`
//! (`51 41 53 50 b8 17 00 00 00 0f 05`).

use hypercall_abi::xen::__HYPERVISOR_iret;

/// Bytes per stub.
pub const STUB_SIZE: usize = 32;
/// Stubs per page.
pub const STUBS: usize = 4096 / STUB_SIZE;
/// `int3`, the filler between stubs.
const INT3: u8 = 0xcc;

/// Writes Xen's ring-3 (64-bit PV kernel) hypercall stubs into `page`.
pub fn write_hypercall_page(page: &mut [u8; 4096]) {
    page.fill(INT3);
    for (i, stub) in page.chunks_exact_mut(STUB_SIZE).enumerate() {
        let nr = i as u32;
        if nr == __HYPERVISOR_iret {
            let [a, b, c, d] = nr.to_le_bytes();
            stub[..11].copy_from_slice(&[0x51, 0x41, 0x53, 0x50, 0xb8, a, b, c, d, 0x0f, 0x05]);
        } else {
            let [a, b, c, d] = nr.to_le_bytes();
            stub[..14].copy_from_slice(&[
                0x51, 0x41, 0x53, 0xb8, a, b, c, d, 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3,
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_match_xen_byte_for_byte() {
        let mut page = [0u8; 4096];
        write_hypercall_page(&mut page);
        // __HYPERVISOR_console_io = 18.
        let console_io = &page[18 * 32..19 * 32];
        assert_eq!(
            console_io[..14],
            [0x51, 0x41, 0x53, 0xb8, 18, 0, 0, 0, 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3]
        );
        assert!(console_io[14..].iter().all(|&b| b == 0xcc));
        let iret = &page[23 * 32..24 * 32];
        assert_eq!(
            iret[..11],
            [0x51, 0x41, 0x53, 0x50, 0xb8, 23, 0, 0, 0, 0x0f, 0x05]
        );
        assert!(iret[11..].iter().all(|&b| b == 0xcc));
        let last = &page[127 * 32..];
        assert_eq!(last[3..8], [0xb8, 127, 0, 0, 0]);
        for (i, stub) in page.chunks_exact(32).enumerate() {
            if i != 23 {
                assert_eq!(stub[4..8], (i as u32).to_le_bytes(), "stub {i}");
                assert_eq!(stub[13], 0xc3, "stub {i}");
            }
        }
    }
}
