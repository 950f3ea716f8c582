//! A free-list cache in front of the system allocator, for the small blocks
//! a call allocates and frees (header and body buffers, Vecs, Strings).
//!
//! On wasm32-wasip1 the system allocator is wasi-libc's dlmalloc: a malloc
//! and its free cost about 500 wasm instructions, and a chat call made some
//! twenty of them. Here a freed block of up to 1 KiB goes onto the free list
//! of its size class (16, 32, … 1024 bytes) and the next request of that
//! class takes it back: about 20 instructions each way. Blocks in the lists
//! are never handed back to dlmalloc, so what the cache holds is bounded by
//! the most small blocks ever live at once; larger blocks go straight
//! through, `realloc` included.
//!
//! proxy-wasm runs a VM on one thread and wasm32-wasip1 has no threads, so
//! the lists need no lock; the glue installs it as the global allocator on
//! wasm32 only. Native tests drive an instance directly.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes: 16 << i bytes.
const CLASSES: usize = 7;
const SMALLEST: usize = 16;
/// The largest block a class holds (1 KiB).
pub const LARGEST: usize = SMALLEST << (CLASSES - 1);
/// Every class block is allocated with this alignment (wasm32 asks for 8 at most).
const ALIGN: usize = 16;

pub struct ClassCache<A> {
    inner: A,
    /// Head of each class's free list; a free block's first word points to
    /// the next one.
    heads: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: used as the global allocator only on wasm32-wasip1, where a VM
// runs on a single thread (no wasm threads); native tests use an instance
// on one thread.
unsafe impl<A: Sync> Sync for ClassCache<A> {}

impl<A> ClassCache<A> {
    pub const fn new(inner: A) -> Self {
        ClassCache {
            inner,
            heads: UnsafeCell::new([ptr::null_mut(); CLASSES]),
        }
    }
}

/// The class of `layout`, if it has one.
#[inline(always)]
fn class_of(layout: &Layout) -> Option<usize> {
    let size = layout.size();
    if size > LARGEST || layout.align() > ALIGN {
        return None;
    }
    if size <= SMALLEST {
        return Some(0);
    }
    Some((usize::BITS - (size - 1).leading_zeros()) as usize - 4)
}

#[inline(always)]
fn class_layout(class: usize) -> Layout {
    // SAFETY (of the unchecked constructor): a power of two size ≤ 1 KiB,
    // alignment 16, a power of two.
    unsafe { Layout::from_size_align_unchecked(SMALLEST << class, ALIGN) }
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for ClassCache<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(&layout) else {
            return self.inner.alloc(layout);
        };
        let heads = &mut *self.heads.get();
        let Some(head) = heads.get_mut(class) else {
            return self.inner.alloc(layout);
        };
        let block = *head;
        if block.is_null() {
            return self.inner.alloc(class_layout(class));
        }
        *head = block.cast::<*mut u8>().read();
        block
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(&layout) else {
            return self.inner.dealloc(block, layout);
        };
        let heads = &mut *self.heads.get();
        match heads.get_mut(class) {
            Some(head) => {
                block.cast::<*mut u8>().write(*head);
                *head = block;
            }
            None => self.inner.dealloc(block, class_layout(class)),
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid new layout.
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (class_of(&layout), class_of(&new_layout)) {
            // The block already has room (its class size).
            (Some(old), Some(new)) if old == new => block,
            // Neither is a class block: dlmalloc may grow it in place.
            (None, None) => self.inner.realloc(block, layout, new_size),
            _ => {
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    self.dealloc(block, layout);
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn classes_cover_small_blocks_only() {
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class_of(&l(1, 1)), Some(0));
        assert_eq!(class_of(&l(16, 8)), Some(0));
        assert_eq!(class_of(&l(17, 1)), Some(1));
        assert_eq!(class_of(&l(32, 4)), Some(1));
        assert_eq!(class_of(&l(33, 4)), Some(2));
        assert_eq!(class_of(&l(1024, 8)), Some(6));
        assert_eq!(class_of(&l(1025, 1)), None);
        assert_eq!(class_of(&l(8, 32)), None, "over-aligned blocks go through");
        for size in 1..=LARGEST {
            let c = class_of(&l(size, 1)).unwrap();
            assert!(size <= SMALLEST << c && (c == 0 || size > SMALLEST << (c - 1)));
        }
    }

    #[test]
    fn freed_blocks_are_reused_and_keep_their_contents_apart() {
        let cache = ClassCache::new(System);
        let l = Layout::from_size_align(24, 8).unwrap();
        unsafe {
            let a = cache.alloc(l);
            let b = cache.alloc(l);
            assert!(!a.is_null() && !b.is_null() && a != b);
            ptr::write_bytes(a, 0xaa, 24);
            ptr::write_bytes(b, 0xbb, 24);
            cache.dealloc(a, l);
            // Same class, other size: the freed block comes back.
            let c = cache.alloc(Layout::from_size_align(20, 4).unwrap());
            assert_eq!(c, a);
            assert_eq!(*b.add(23), 0xbb, "a live block is untouched");
            cache.dealloc(c, Layout::from_size_align(20, 4).unwrap());
            cache.dealloc(b, l);
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_sizes() {
        let cache = ClassCache::new(System);
        unsafe {
            let mut size = 10;
            let mut layout = Layout::from_size_align(size, 1).unwrap();
            let mut p = cache.alloc(layout);
            for i in 0..size {
                *p.add(i) = i as u8;
            }
            // 10 → 12 (same class) → 100 → 3000 (no class) → 5000 → 40.
            for next in [12, 100, 3000, 5000, 40] {
                p = cache.realloc(p, layout, next);
                assert!(!p.is_null());
                for i in 0..size.min(next).min(10) {
                    assert_eq!(*p.add(i), i as u8, "{size} → {next}");
                }
                size = next;
                layout = Layout::from_size_align(size, 1).unwrap();
            }
            cache.dealloc(p, layout);
        }
    }
}
