//! A heap buffer with a power-of-two alignment, as O_DIRECT needs.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

/// Why an aligned buffer could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlignError {
    /// The alignment is zero or not a power of two.
    #[error("alignment {0} is not a power of two")]
    NotPowerOfTwo(usize),
    /// The length is zero or does not fit the allocator's limits.
    #[error("buffer of {len} bytes aligned to {align} cannot be allocated")]
    BadSize {
        /// Requested length.
        len: usize,
        /// Requested alignment.
        align: usize,
    },
}

/// An owned, zero-initialised byte buffer whose start is aligned to `align` bytes.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes aligned to `align` (a power of two).
    pub fn new(len: usize, align: usize) -> Result<Self, AlignError> {
        if align == 0 || !align.is_power_of_two() {
            return Err(AlignError::NotPowerOfTwo(align));
        }
        let layout = Layout::from_size_align(len, align)
            .ok()
            .filter(|_| len > 0)
            .ok_or(AlignError::BadSize { len, align })?;
        // SAFETY: layout has a non-zero size, checked above.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(AlignError::BadSize { len, align })?;
        Ok(AlignedBuf { ptr, layout })
    }

    /// The buffer's bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for layout.size() initialised bytes for as long as self lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    /// The buffer's bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated with exactly this layout and is freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        for align in [512usize, 4096, 1 << 16] {
            let b = AlignedBuf::new(3 * align, align).unwrap();
            assert_eq!(b.as_slice().as_ptr() as usize % align, 0);
            assert_eq!(b.as_slice().len(), 3 * align);
            assert!(b.as_slice().iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn rejects_bad_alignment_and_size() {
        assert_eq!(
            AlignedBuf::new(4096, 3).err(),
            Some(AlignError::NotPowerOfTwo(3))
        );
        assert_eq!(
            AlignedBuf::new(4096, 0).err(),
            Some(AlignError::NotPowerOfTwo(0))
        );
        assert!(matches!(
            AlignedBuf::new(0, 4096),
            Err(AlignError::BadSize { .. })
        ));
    }
}
