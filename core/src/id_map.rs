//! Maps keyed by the integer ids a server (or ferry) assigns, such as prepared-statement ids.
//!
//! They are looked up on every `COM_STMT_EXECUTE` and its response, several times per query;
//! std's SipHash costs more than the rest of such a lookup. These keys are not chosen by the
//! peer that could attack the map (a client sends ids, but only ids the server or ferry handed
//! out are ever inserted), so a multiplicative hash is enough, and it spreads sequential ids over
//! both the bucket index (low bits) and hashbrown's control byte (top bits).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by an assigned `u32` id, hashed with [`IdHasher`].
pub type IdMap<V> = HashMap<u32, V, BuildIdHasher>;

/// Builds [`IdHasher`]s (`IdMap::default()` makes an empty map).
pub type BuildIdHasher = BuildHasherDefault<IdHasher>;

/// Fibonacci hashing of one integer key; other input is folded in byte by byte (not expected).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

/// 2^64 / φ, odd: multiplying by it is a bijection that mixes low bits into high ones.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(GOLDEN);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hasher};

    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets_and_control_bytes() {
        let build = BuildIdHasher::default();
        let hashes: Vec<u64> = (1..=256u32).map(|id| build.hash_one(id)).collect();
        // Bucket index of a 256-slot table (low bits) and hashbrown's 7-bit tag (top bits).
        let buckets: HashSet<u64> = hashes.iter().map(|h| h & 255).collect();
        let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(buckets.len(), 256, "a bijection on the low bits");
        assert!(tags.len() > 100, "only {} distinct tags", tags.len());
    }

    #[test]
    fn a_map_behaves_like_a_map() {
        let mut m: IdMap<&str> = IdMap::default();
        for id in 0..1000 {
            m.insert(id, "x");
        }
        m.insert(7, "seven");
        assert_eq!(m.len(), 1000);
        assert_eq!(m.get(&7), Some(&"seven"));
        assert_eq!(m.remove(&999), Some("x"));
        assert!(!m.contains_key(&999));
        let mut h = IdHasher::default();
        h.write(b"ab");
        assert_ne!(h.finish(), IdHasher::default().finish());
    }
}
