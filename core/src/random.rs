//! Injected randomness: the core never reads the OS random source itself.

/// A source of random bytes, supplied by the driver (OS randomness) or a test (a fixed seed).
///
/// Salts and scrambles must be unpredictable in production, so drivers back this with a CSPRNG.
pub trait RandomSource {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// A deterministic generator (xorshift64*) for tests and fuzzing. **Not** cryptographically secure.
#[derive(Debug, Clone)]
pub struct SeededRandom(u64);

impl SeededRandom {
    /// A generator whose output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
}

impl RandomSource for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *b = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
    }
}

/// Adapts a [`RandomSource`] to `rand_core` for the `rsa` crate's OAEP padding.
pub(crate) struct RngAdapter<'a>(pub(crate) &'a mut dyn RandomSource);

impl rand_core::RngCore for RngAdapter<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

// The driver promises a CSPRNG behind the trait; OAEP needs the marker.
impl rand_core::CryptoRng for RngAdapter<'_> {}
