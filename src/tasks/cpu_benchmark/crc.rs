//! The CRC-64/XZ step of the benchmark, computed the way the grid's reference
//! tool `cpubench` computes it, so that a second spent here is a second spent
//! there.
//!
//! The reference hashes each 8-byte seed with one routine that handles up to
//! 16 bytes lying inside one 16-byte-aligned block: one aligned 128-bit load
//! of that block, byte shuffles that line the message and the CRC register up
//! at the top of an XMM register, **one** carry-less-multiply fold of the low
//! half onto the high half, and a Barrett reduction (two more carry-less
//! multiplies) down to 64 bits. No tables, no multi-block folding. The cost of
//! a step is the latency of that chain, plus the store of the seed to memory
//! and its wider reload, so [`ClmulKernel`] keeps each of those: the seed is
//! written to an aligned [`Block`] in memory and the kernel is a real call
//! (`#[inline(never)]`) that reloads the whole block, and two empty `asm!`
//! barriers keep LLVM from shortening the chain below the reference's.
//!
//! [`portable_update`] computes the very same fold and reduction on `u128`
//! with a software carry-less multiply, for CPUs without PCLMULQDQ (its
//! timings are then not comparable with the reference, which needs it too).
//!
//! Bit order: CRC-64/XZ is reflected, so bit 0 of a 64-bit lane is the
//! highest-degree coefficient and a carry-less product of two lanes comes out
//! one bit short of the reflected 128-bit product; the constants below carry
//! that extra factor of x (they are the usual "<< 1" constants).

/// `x^128 mod P`, bit-reflected and shifted left by one (k2 of the
/// reference): folds the low lane of the 128-bit register onto the high lane.
const K_FOLD: u64 = 0xdabe_95af_c787_5f40;
/// `x^192 mod P`, likewise (k1 of the reference). It sits beside [`K_FOLD`]
/// in the fold constant register as there; a one-block fold does not use it.
const K_FOLD_HI: u64 = 0xe05d_d497_ca39_3ae4;
/// The Barrett constant `floor(x^128 / P)` (degree 64), bit-reflected over
/// 65 bits, top bit dropped (mu of the reference).
const MU: u64 = 0x9c3e_466c_1729_63d5;
/// The reflected polynomial `0xc96c5795d7870f42` shifted left by one with the
/// low bit set: P with its x^64 term (p of the reference).
const POLY: u64 = 0x92d8_af2b_af0e_1e85;

/// PSHUFB controls for byte shifts. Read from offset `16 - n`, the 16 bytes
/// move the input down by `16 - n` bytes (what a shift up by `n` pushes out
/// of the top); inverted, they move it up by `n` bytes. Entries with the
/// high bit set select zero.
#[cfg(target_arch = "x86_64")]
static SHIFT_CONTROLS: [u8; 32] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x8f, 0x8e, 0x8d, 0x8c, 0x8b, 0x8a, 0x89, 0x88, 0x87, 0x86, 0x85, 0x84, 0x83, 0x82, 0x81, 0x80,
];

/// 16 bytes on a 16-byte boundary: the unit the step loads at once.
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Block(pub [u8; 16]);

/// Which implementation of the step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// SSE4.1 + PCLMULQDQ, as the reference tool: comparable scores.
    Clmul,
    /// Software carry-less multiply: same values, not comparable timings.
    Portable,
}

impl Path {
    /// The fast path when this CPU has SSE4.1 and PCLMULQDQ, else portable.
    pub fn detect() -> Path {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("sse4.1")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
            {
                return Path::Clmul;
            }
        }
        Path::Portable
    }

    /// For logs.
    pub fn describe(self) -> &'static str {
        match self {
            Path::Clmul => "SSE4.1+PCLMULQDQ fold and Barrett reduction (as the reference cpubench)",
            Path::Portable => {
                "portable software carry-less multiply (no SSE4.1+PCLMULQDQ: timings not comparable with cpubench)"
            }
        }
    }
}

/// Checks the block bounds every implementation relies on. Always inlined:
/// in the benchmark's loop it must stay two compares, not a call, whatever
/// the build's opt-level.
#[inline(always)]
fn check_span(start: usize, len: usize) {
    assert!(
        (1..=16).contains(&len) && start <= 16 - len,
        "CRC span {start}+{len} outside a 16-byte block"
    );
}

/// Updates the CRC-64/XZ value `crc` (as returned, final xor applied; 0 to
/// start) with the bytes `block[start..start + len]`, by the path's kernel.
///
/// Panics if the span is empty or leaves the block.
pub fn update(path: Path, crc: u64, block: &Block, start: usize, len: usize) -> u64 {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Clmul => match ClmulKernel::new() {
            Some(k) => k.update(crc, block, start, len),
            None => portable_update(crc, block, start, len),
        },
        _ => portable_update(crc, block, start, len),
    }
}

/// CRC-64/XZ of any byte string, in 16-byte spans through [`update`]: the
/// kernel's general form, for tests against other implementations.
#[cfg(test)]
pub(crate) fn checksum(path: Path, data: &[u8]) -> u64 {
    data.chunks(16).fold(0, |crc, chunk| {
        let mut block = Block::default();
        block.0[..chunk.len()].copy_from_slice(chunk);
        update(path, crc, &block, 0, chunk.len())
    })
}

/// One step of the benchmark: CRC-64/XZ of the 8 little-endian bytes of `seed`.
pub fn step(path: Path, seed: u64) -> u64 {
    let mut block = Block::default();
    block.0[8..].copy_from_slice(&seed.to_le_bytes());
    update(path, 0, &block, 8, 8)
}

/// The fast kernel, only obtainable on a CPU that has SSE4.1 and PCLMULQDQ.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClmulKernel(());

#[cfg(target_arch = "x86_64")]
impl ClmulKernel {
    /// `Some` only when the running CPU has SSE4.1 and PCLMULQDQ.
    pub fn new() -> Option<ClmulKernel> {
        (Path::detect() == Path::Clmul).then_some(ClmulKernel(()))
    }

    /// As [`update`]; a call that is never inlined, as in the reference.
    #[inline(always)]
    pub fn update(self, crc: u64, block: &Block, start: usize, len: usize) -> u64 {
        check_span(start, len);
        // SAFETY: a `ClmulKernel` exists only if the CPU has SSE4.1 and
        // PCLMULQDQ (see `new`), and the span was just checked.
        unsafe { clmul_update(crc, block, start, len) }
    }
}

/// The value of `$v`, hidden from the optimizer by an empty `asm!` that
/// claims to change it in place: no instruction is emitted, but LLVM can no
/// longer merge or reassociate the operations on either side.
#[cfg(target_arch = "x86_64")]
macro_rules! opaque {
    ($v:expr, $class:ident) => {{
        let mut v = $v;
        // SAFETY: the template is a comment; it touches no memory or flags.
        std::arch::asm!("/* {0} */", inout($class) v, options(pure, nomem, nostack, preserves_flags));
        v
    }};
}

/// The reference's routine: one aligned load, shuffles, one fold, Barrett.
///
/// # Safety
/// The CPU must support SSE4.1 and PCLMULQDQ, and `1 <= len`,
/// `start + len <= 16` (the shift controls are read at `16 - n` for
/// `n <= 16`, which stays inside the 32-byte table only then).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2,ssse3,sse4.1,pclmulqdq")]
#[inline(never)]
unsafe fn clmul_update(crc: u64, block: &Block, start: usize, len: usize) -> u64 {
    use std::arch::x86_64::*;

    // The PSHUFB control that shifts by `n` bytes (n <= 16).
    macro_rules! controls {
        ($n:expr) => {
            // SAFETY: every `n` below is at most 16 given the span contract,
            // so the 16 bytes read from `16 - n` lie inside the 32-byte table.
            _mm_loadu_si128(SHIFT_CONTROLS.as_ptr().add(16 - $n).cast())
        };
    }
    // (v << 8n bits, the bytes shifted out of the top): a 256-bit shift.
    macro_rules! shift_up {
        ($v:expr, $n:expr) => {{
            let v = $v;
            let down = controls!($n);
            let up = _mm_xor_si128(down, _mm_cmpeq_epi8(down, down));
            (_mm_shuffle_epi8(v, up), _mm_shuffle_epi8(v, down))
        }};
    }

    let fold = _mm_set_epi64x(K_FOLD as i64, K_FOLD_HI as i64);
    let barrett = _mm_set_epi64x(POLY as i64, MU as i64);

    // The whole aligned block, with the bytes before the message cleared.
    let keep = controls!(start);
    // SAFETY: a `Block` is 16 bytes aligned to 16: the aligned load reads
    // exactly it (the reference loads the aligned block around its input).
    let loaded = _mm_load_si128(block.0.as_ptr().cast());
    let data = _mm_blendv_epi8(_mm_setzero_si128(), loaded, keep);
    // Message at the top of the register; the CRC register lined up with
    // its first byte, spilling below the register when the message is short.
    let (message, _after) = shift_up!(data, 16 - (start + len));
    let (crc_low, crc_spill) = shift_up!(_mm_set_epi64x(0, !crc as i64), 16 - len);

    let p = _mm_xor_si128(message, crc_low);
    // One fold: low 64 bits times x^128 onto the high 64 bits (and the spill).
    let r = _mm_xor_si128(
        _mm_clmulepi64_si128(p, fold, 0x10),
        _mm_xor_si128(_mm_srli_si128(p, 8), _mm_slli_si128(crc_spill, 8)),
    );
    // Barrett: quotient estimate from the low half, then subtract q·P.
    let t1 = _mm_clmulepi64_si128(r, barrett, 0x00);
    let qp = _mm_xor_si128(
        _mm_clmulepi64_si128(t1, barrett, 0x10),
        _mm_slli_si128(t1, 8),
    );
    // `opaque!` keeps the reference's order of operations where LLVM would
    // otherwise improve on it: xoring `r` in after (not beside) the last
    // product, and leaving by two 32-bit extracts, a shift and an or rather
    // than one PEXTRQ. Each saves a cycle or two of the ~27 of a step's
    // dependency chain, which made our steps 3-8 % cheaper than the
    // reference's on the same CPU.
    let t2 = _mm_xor_si128(opaque!(qp, xmm_reg), r);
    let hi = opaque!(_mm_extract_epi32(t2, 3) as u32 as u64, reg);
    let lo = opaque!(_mm_extract_epi32(t2, 2) as u32 as u64, reg);
    !((hi << 32) | lo)
}

/// The same fold and reduction as the fast kernel, on `u128` (bit i of the
/// register = bit i of the XMM register), with a software carry-less multiply.
pub(crate) fn portable_update(crc: u64, block: &Block, start: usize, len: usize) -> u64 {
    check_span(start, len);
    let word = u128::from_le_bytes(block.0);
    let message = (word >> (8 * start)) << (8 * (16 - len));
    let register = u128::from(!crc);
    let crc_low = register << (8 * (16 - len));
    let crc_spill = register.checked_shr(8 * len as u32).unwrap_or(0);

    let p = message ^ crc_low;
    let r = clmul_by(&FOLD_MULTIPLES, p as u64) ^ (p >> 64) ^ (crc_spill << 64);
    let t1 = clmul_by(&MU_MULTIPLES, r as u64);
    let t2 = clmul_by(&POLY_MULTIPLES, t1 as u64) ^ (t1 << 64) ^ r;
    !((t2 >> 64) as u64)
}

/// Carry-less products of the constants with every byte value (4 KiB each),
/// so a software 64×64 product takes 8 lookups instead of 64 bit tests.
static FOLD_MULTIPLES: [u128; 256] = byte_multiples(K_FOLD);
static MU_MULTIPLES: [u128; 256] = byte_multiples(MU);
static POLY_MULTIPLES: [u128; 256] = byte_multiples(POLY);

const fn byte_multiples(k: u64) -> [u128; 256] {
    let mut table = [0u128; 256];
    let mut n = 0;
    while n < 256 {
        let mut bit = 0;
        while bit < 8 {
            if (n >> bit) & 1 == 1 {
                table[n] ^= (k as u128) << bit;
            }
            bit += 1;
        }
        n += 1;
    }
    table
}

/// Carry-less product `a × k` (as PCLMULQDQ computes it) from `k`'s table.
fn clmul_by(multiples: &[u128; 256], a: u64) -> u128 {
    a.to_le_bytes()
        .iter()
        .enumerate()
        .fold(0, |acc, (i, &byte)| {
            acc ^ (multiples[usize::from(byte)] << (8 * i))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REFERENCE: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

    /// Both paths; the fast one must exist on the x86_64 machines this runs on.
    fn paths() -> Vec<Path> {
        #[cfg(target_arch = "x86_64")]
        assert!(
            ClmulKernel::new().is_some(),
            "this x86_64 CPU lacks SSE4.1 or PCLMULQDQ: the fast path is untested"
        );
        let mut paths = vec![Path::Portable];
        if Path::detect() == Path::Clmul {
            paths.push(Path::Clmul);
        }
        paths
    }

    #[test]
    fn check_value_of_123456789_on_both_paths() {
        for path in paths() {
            assert_eq!(
                checksum(path, b"123456789"),
                0x995d_c9bb_df19_39fa,
                "{path:?}"
            );
            assert_eq!(checksum(path, b""), 0, "{path:?}");
        }
    }

    #[test]
    fn one_step_is_the_crc_of_the_seeds_little_endian_bytes() {
        let seed = 0x0a0b_0c0d_1234_5ff0u64;
        let expected = REFERENCE.checksum(&seed.to_le_bytes());
        for path in paths() {
            assert_eq!(step(path, seed), expected, "{path:?}");
        }
    }

    #[test]
    fn both_paths_follow_the_reference_crate_along_the_8_byte_chain() {
        let mut seed = 0x0a0b_0c0d_1234_5ff0u64;
        for i in 0..200_000 {
            let expected = REFERENCE.checksum(&seed.to_le_bytes());
            for path in paths() {
                assert_eq!(step(path, seed), expected, "{path:?} at step {i}");
            }
            seed = expected;
        }
    }

    #[test]
    #[should_panic(expected = "outside a 16-byte block")]
    fn a_span_leaving_the_block_is_refused() {
        update(Path::detect(), 0, &Block::default(), 9, 8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn both_paths_agree_with_the_reference_crate_on_any_input(
            data in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let expected = REFERENCE.checksum(&data);
            for path in paths() {
                prop_assert_eq!(checksum(path, &data), expected, "{:?}", path);
            }
        }

        /// The kernel continues any CRC over any span of a block, whatever
        /// the other bytes of the block hold.
        #[test]
        fn a_span_anywhere_in_a_block_continues_the_crc(
            prefix in proptest::collection::vec(any::<u8>(), 0..40),
            junk in any::<[u8; 16]>(),
            len in 1usize..=16,
            start_seed in any::<usize>(),
        ) {
            let start = start_seed % (17 - len);
            let block = Block(junk);
            let span = &junk[start..start + len];
            let before = REFERENCE.checksum(&prefix);
            let expected = REFERENCE.checksum(&[prefix.as_slice(), span].concat());
            for path in paths() {
                prop_assert_eq!(update(path, before, &block, start, len), expected, "{:?}", path);
            }
        }

        #[test]
        fn both_paths_agree_on_random_8_byte_seeds(seed in any::<u64>()) {
            let expected = REFERENCE.checksum(&seed.to_le_bytes());
            for path in paths() {
                prop_assert_eq!(step(path, seed), expected, "{:?}", path);
            }
        }
    }
}
