//! OS randomness for the sessions (salts, scrambles, RSA padding).

use ferry_core::RandomSource;
use rand::rngs::OsRng;
use rand::RngCore;

/// The operating system's CSPRNG (`getrandom`). Zero-sized: boxing it allocates nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        // getrandom fails only before the kernel's pool is initialised at boot or with a broken
        // sandbox; a proxy must not hand out predictable salts, so that is fatal.
        #[allow(clippy::expect_used)]
        OsRng
            .try_fill_bytes(buf)
            .expect("the OS random source failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_with_different_bytes_each_time() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        OsRandom.fill(&mut a);
        OsRandom.fill(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
