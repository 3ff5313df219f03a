//! Small stable hashes the contracts pin down.
//!
//! The advisory-lock key of a workspace is the 64-bit FNV-1 hash (not FNV-1a,
//! which the `fnv` crate implements) of `lifecycle-executor:<uuid>`, read as an
//! `i64`, as the reference computes it; both backends must agree on it.

use crate::ids::WorkspaceId;

const FNV_OFFSET_BASIS_64: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME_64: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1: multiply, then xor, for each byte.
pub fn fnv1_64(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS_64;
    for byte in bytes {
        hash = hash.wrapping_mul(FNV_PRIME_64);
        hash ^= u64::from(*byte);
    }
    hash
}

/// Key of an advisory lock, as PostgreSQL's `bigint` argument.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LockKey(pub i64);

impl LockKey {
    /// The lifecycle executor's per-workspace lock.
    pub fn lifecycle(workspace: WorkspaceId) -> LockKey {
        let text = format!("lifecycle-executor:{}", workspace.0.hyphenated());
        LockKey(fnv1_64(text.as_bytes()) as i64)
    }

    /// A named singleton lock (the reconciler's, for example).
    pub fn named(name: &str) -> LockKey {
        LockKey(fnv1_64(name.as_bytes()) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1_known_vectors() {
        // Published FNV-1 64-bit test vectors.
        assert_eq!(fnv1_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1_64(b"a"), 0xaf63_bd4c_8601_b7be);
        assert_eq!(fnv1_64(b"foobar"), 0x340d_8765_a4dd_a9c2);
    }
}
