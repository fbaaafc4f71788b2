//! Randomness for the session's parts: the frontend owns the session's random source (its salts
//! must be unpredictable); each backend connection gets a generator seeded from it.

use sha2::{Digest, Sha256};

use crate::RandomSource;

/// A hash-based generator (SHA-256 of a 32-byte secret seed and a block counter, as in NIST's
/// Hash_DRBG without reseeding). Seeded from the driver's CSPRNG, its output is as unpredictable
/// as the seed; backends use it only for RSA-OAEP padding.
pub(crate) struct HashRandom {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl HashRandom {
    /// A generator seeded with 32 bytes from `parent`.
    pub(crate) fn from_parent(parent: &mut dyn RandomSource) -> Self {
        let mut seed = [0u8; 32];
        parent.fill(&mut seed);
        Self {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl RandomSource for HashRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == self.block.len() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_le_bytes());
                self.block = h.finalize().into();
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }
}

/// The session's own source, shared with the frontend it created: the frontend takes a boxed
/// source, so the session keeps a generator seeded from the driver's before handing that over.
pub(crate) fn split(
    mut parent: Box<dyn RandomSource + Send>,
) -> (Box<dyn RandomSource + Send>, HashRandom) {
    let child = HashRandom::from_parent(parent.as_mut());
    (parent, child)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeededRandom;

    #[test]
    fn children_differ_and_are_deterministic_per_seed() {
        let mut a = HashRandom::from_parent(&mut SeededRandom::new(1));
        let mut b = HashRandom::from_parent(&mut SeededRandom::new(2));
        let mut a2 = HashRandom::from_parent(&mut SeededRandom::new(1));
        let (mut x, mut y, mut z) = ([0u8; 70], [0u8; 70], [0u8; 70]);
        a.fill(&mut x);
        b.fill(&mut y);
        a2.fill(&mut z[..5]);
        a2.fill(&mut z[5..]);
        assert_ne!(x, y);
        assert_eq!(x, z, "split fills give the same stream");
        assert_ne!(x[..32], x[32..64], "blocks differ");
    }
}
