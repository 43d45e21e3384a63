//! Stable short hashes for names and labels (pod-template-hash,
//! controller-revision-hash): FNV-1a 32 of the object's JSON plus an
//! optional collision count, written with upstream's "safe" alphabet
//! (no vowels, no look-alike digits) so they never spell words.

use serde::Serialize;

const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bits.
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// Maps the decimal digits of `n` onto the safe alphabet, as upstream's
/// `rand.SafeEncodeString(fmt.Sprint(n))`.
pub fn safe_encode(n: u32) -> String {
    n.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// Hash of `obj` (as JSON) and the collision count, safe-encoded.
pub fn object_hash<T: Serialize>(obj: &T, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(obj).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    safe_encode(fnv1a32(&bytes))
}

/// A random suffix of `n` safe characters (generateName style).
pub fn random_suffix(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| SAFE[rng.random_range(0..SAFE.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_vector() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
    }

    #[test]
    fn hashes_are_stable_and_safe() {
        let a = object_hash(&serde_json::json!({"x": 1}), None);
        assert_eq!(a, object_hash(&serde_json::json!({"x": 1}), None));
        assert_ne!(a, object_hash(&serde_json::json!({"x": 1}), Some(1)));
        assert!(a.bytes().all(|b| SAFE.contains(&b)));
        assert_eq!(random_suffix(5).len(), 5);
    }
}
