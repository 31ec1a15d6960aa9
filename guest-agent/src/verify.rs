//! Block contents: a zvbench header on every block, and with `--verify` a per-block
//! pattern and checksum that a read pass checks.
//!
//! Layout of a block's first 40 bytes (little-endian): magic (8), block index (8),
//! run seed (8), block size (8), CRC32 of the whole block with this field zeroed (8).
//! Without `--verify` only the magic is written and the rest of the buffer is fixed
//! pseudo-random bytes (incompressible, so ZFS compression cannot shortcut the test).

use crate::record::VerifyResult;
use crate::target::BLOCK_MAGIC;

/// Size of the header at the start of every verified block.
pub const HEADER_LEN: usize = 40;
const CRC_OFF: usize = 32;

/// SplitMix64: a small, fast, well-mixed generator for patterns.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with pseudo-random bytes from `seed` and stamps the magic at offset 0.
pub fn fill_random(buf: &mut [u8], seed: u64) {
    let mut s = seed;
    for chunk in buf.chunks_mut(8) {
        let v = splitmix(&mut s).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    stamp_magic(buf);
}

/// Writes the magic at the start of the block.
pub fn stamp_magic(buf: &mut [u8]) {
    let n = BLOCK_MAGIC.len().min(buf.len());
    buf[..n].copy_from_slice(&BLOCK_MAGIC[..n]);
}

/// Makes `buf` the verified content of block `index` of a run with `seed`.
/// `buf` must be at least [`HEADER_LEN`] bytes.
pub fn fill_block(buf: &mut [u8], index: u64, seed: u64) {
    let mut s = seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407);
    for chunk in buf[HEADER_LEN..].chunks_mut(8) {
        let v = splitmix(&mut s).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    buf[..8].copy_from_slice(BLOCK_MAGIC);
    buf[8..16].copy_from_slice(&index.to_le_bytes());
    buf[16..24].copy_from_slice(&seed.to_le_bytes());
    let len = buf.len() as u64;
    buf[24..32].copy_from_slice(&len.to_le_bytes());
    buf[CRC_OFF..HEADER_LEN].fill(0);
    let crc = crc32fast::hash(buf) as u64;
    buf[CRC_OFF..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// The verdict on one block read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockCheck {
    /// Header and checksum match this block of this run.
    Ok,
    /// No zvbench header: never written, or foreign data.
    Mismatched,
    /// An intact zvbench block, but of another run or position.
    Stale,
    /// The header is this block's, but the checksum is wrong.
    Torn,
}

/// Checks a block read back. Leaves `buf` modified (the CRC field is zeroed).
pub fn check_block(buf: &mut [u8], index: u64, seed: u64) -> BlockCheck {
    if buf.len() < HEADER_LEN || &buf[..8] != BLOCK_MAGIC {
        return BlockCheck::Mismatched;
    }
    let word = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let (idx, sd, len, crc) = (
        word(buf, 8),
        word(buf, 16),
        word(buf, 24),
        word(buf, CRC_OFF),
    );
    buf[CRC_OFF..HEADER_LEN].fill(0);
    let crc_ok = crc32fast::hash(buf) as u64 == crc;
    let mine = idx == index && sd == seed && len == buf.len() as u64;
    match (mine, crc_ok) {
        (true, true) => BlockCheck::Ok,
        (true, false) => BlockCheck::Torn,
        (false, true) => BlockCheck::Stale,
        (false, false) => BlockCheck::Mismatched,
    }
}

impl VerifyResult {
    /// Counts one checked block.
    pub fn add(&mut self, c: BlockCheck) {
        self.checked += 1;
        match c {
            BlockCheck::Ok => self.ok += 1,
            BlockCheck::Mismatched => self.mismatched += 1,
            BlockCheck::Stale => self.stale += 1,
            BlockCheck::Torn => self.torn += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_block_checks_ok() {
        let mut b = vec![0u8; 4096];
        fill_block(&mut b, 7, 42);
        assert_eq!(check_block(&mut b, 7, 42), BlockCheck::Ok);
    }

    #[test]
    fn other_position_or_run_is_stale() {
        let mut b = vec![0u8; 4096];
        fill_block(&mut b, 7, 42);
        let mut c = b.clone();
        assert_eq!(check_block(&mut b, 8, 42), BlockCheck::Stale);
        assert_eq!(check_block(&mut c, 7, 43), BlockCheck::Stale);
    }

    #[test]
    fn half_written_block_is_torn() {
        let mut new = vec![0u8; 4096];
        fill_block(&mut new, 3, 42);
        let mut old = vec![0u8; 4096];
        fill_block(&mut old, 3, 41);
        // The first sector of the new write landed; the rest is old data.
        new[512..].copy_from_slice(&old[512..]);
        assert_eq!(check_block(&mut new, 3, 42), BlockCheck::Torn);
    }

    #[test]
    fn zeros_or_foreign_data_mismatch() {
        assert_eq!(
            check_block(&mut vec![0u8; 4096], 0, 1),
            BlockCheck::Mismatched
        );
        let mut r = vec![0u8; 4096];
        fill_random(&mut r, 5);
        assert_eq!(check_block(&mut r, 0, 5), BlockCheck::Mismatched);
    }

    #[test]
    fn counts() {
        let mut v = VerifyResult::default();
        for c in [
            BlockCheck::Ok,
            BlockCheck::Ok,
            BlockCheck::Torn,
            BlockCheck::Stale,
            BlockCheck::Mismatched,
        ] {
            v.add(c);
        }
        assert_eq!(
            (v.checked, v.ok, v.torn, v.stale, v.mismatched),
            (5, 2, 1, 1, 1)
        );
        assert!(!v.passed());
    }
}
