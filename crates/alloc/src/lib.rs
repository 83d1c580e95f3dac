//! hookwire's global allocator: mimalloc for everything but large blocks,
//! which are mapped from the kernel and unmapped when freed.
//!
//! Layout: [`ServerAllocator`] (the `GlobalAlloc`), `map` (the kernel
//! mappings, Linux only; elsewhere every block goes to mimalloc).
//!
//! Large blocks are transient here: a `sync` page of up to 16 MiB while it is
//! read, encoded and written, a big frame, a plugin's component while it
//! compiles. mimalloc keeps what it freed for reuse (its large pages sit in
//! segments shared with small objects, and are purged only when the thread
//! that owns them allocates again), so a burst of large pages would leave
//! the node's RSS at the burst's peak for good. A mapping of its own per
//! large block goes back to the kernel on free, the way glibc's malloc
//! treats blocks over its mmap threshold, at the price of a syscall and the
//! page faults per large block: small next to writing it to sockets.

use std::alloc::{GlobalAlloc, Layout};

/// Blocks of this size or more get a mapping of their own.
pub const DIRECT_BYTES: usize = 256 * 1024;

/// The alignment a fresh mapping guarantees.
const PAGE_BYTES: usize = 4096;

/// mimalloc, with large blocks mapped directly.
pub struct ServerAllocator;

fn direct(layout: &Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= DIRECT_BYTES && layout.align() <= PAGE_BYTES
}

#[cfg(target_os = "linux")]
mod map {
    use rustix::mm::{MapFlags, MremapFlags, ProtFlags};
    use std::ffi::c_void;

    pub unsafe fn alloc(len: usize) -> *mut u8 {
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .map_or(std::ptr::null_mut(), |p| p.cast())
    }

    pub unsafe fn free(ptr: *mut u8, len: usize) {
        // SAFETY: `ptr` and `len` are those of a mapping `alloc` made (the
        // caller's layout is the one it was allocated with).
        let _ = unsafe { rustix::mm::munmap(ptr.cast::<c_void>(), len) };
    }

    pub unsafe fn grow(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: as `free`; the kernel moves the pages, nothing is copied.
        unsafe { rustix::mm::mremap(ptr.cast::<c_void>(), old, new, MremapFlags::MAYMOVE) }
            .map_or(std::ptr::null_mut(), |p| p.cast())
    }
}

#[cfg(not(target_os = "linux"))]
mod map {
    pub unsafe fn alloc(_: usize) -> *mut u8 {
        unreachable!("direct mappings are used on Linux only")
    }
    pub unsafe fn free(_: *mut u8, _: usize) {}
    pub unsafe fn grow(_: *mut u8, _: usize, _: usize) -> *mut u8 {
        unreachable!("direct mappings are used on Linux only")
    }
}

// SAFETY: every block is freed by the allocator that made it: the choice
// depends only on the layout, and `dealloc`/`realloc` get the layout the
// block was made (or last resized) with. The callers' contracts (a valid,
// non-zero layout; a live block with its layout) are passed on unchanged.
unsafe impl GlobalAlloc for ServerAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if direct(&layout) {
            // SAFETY: a fresh mapping of `layout.size()` bytes, page-aligned.
            unsafe { map::alloc(layout.size()) }
        } else {
            // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if direct(&layout) {
            // SAFETY: as `alloc`; fresh anonymous pages are zero.
            unsafe { map::alloc(layout.size()) }
        } else {
            // SAFETY: the caller's layout, as `GlobalAlloc::alloc_zeroed` requires.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if direct(&layout) {
            // SAFETY: the same layout chose a direct mapping of this size when
            // the block was made.
            unsafe { map::free(ptr, layout.size()) }
        } else {
            // SAFETY: the same layout chose mimalloc when the block was made.
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (direct(&layout), direct(&new)) {
            // SAFETY: a mimalloc block, staying one.
            (false, false) => unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) },
            // SAFETY: a direct mapping of `layout.size()` bytes, staying one.
            (true, true) => unsafe { map::grow(ptr, layout.size(), new_size) },
            _ => {
                // SAFETY: `new` is a valid layout (above).
                let moved = unsafe { self.alloc(new) };
                if !moved.is_null() {
                    // SAFETY: both blocks are live and distinct, each at least
                    // as long as the bytes copied; the old one is freed with
                    // the layout it was made with.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
    }
}

// The test's blocks share one safety argument, written once at its top.
#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)]
mod tests {
    use super::*;

    /// Blocks on both sides of the threshold, grown and shrunk across it,
    /// keep their contents.
    #[test]
    fn blocks_keep_their_bytes_across_the_threshold() {
        let a = ServerAllocator;
        let sizes = [
            16,
            DIRECT_BYTES - 1,
            DIRECT_BYTES,
            3 * DIRECT_BYTES + 5,
            100,
            8 * DIRECT_BYTES,
        ];
        let mut layout = Layout::from_size_align(sizes[0], 8).unwrap();
        // SAFETY (here and below): every layout is valid and non-zero; each
        // block is used within its size and freed once with its layout.
        let mut p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        unsafe { p.write_bytes(0xab, layout.size()) };
        for &size in &sizes[1..] {
            let kept = layout.size().min(size);
            p = unsafe { a.realloc(p, layout, size) };
            assert!(!p.is_null());
            let bytes = unsafe { std::slice::from_raw_parts(p, kept) };
            assert!(
                bytes.iter().all(|&b| b == 0xab),
                "{} → {size} bytes",
                layout.size()
            );
            layout = Layout::from_size_align(size, 8).unwrap();
            unsafe { p.write_bytes(0xab, size) };
        }
        unsafe { a.dealloc(p, layout) };
        let zeroed = Layout::from_size_align(2 * DIRECT_BYTES, 64).unwrap();
        let z = unsafe { a.alloc_zeroed(zeroed) };
        assert!(
            unsafe { std::slice::from_raw_parts(z, zeroed.size()) }
                .iter()
                .all(|&b| b == 0)
        );
        unsafe { a.dealloc(z, zeroed) };
    }
}
