//! Routing streams to partitions with a hash that never changes.
//!
//! The partition of a stream is `stable_hash(tenant, entity_id) % partition_count`.
//! The hash is FNV-1a (64-bit) over `tenant`, a 0xFF separator (a byte that never
//! occurs in UTF-8, so `("ab","c")` and `("a","bc")` differ) and `entity_id`, followed
//! by the MurmurHash3 64-bit finalizer so that the low bits used by `%` are well mixed.
//! It depends on nothing but the bytes: the same on every run, platform and release.
//! The test vectors below pin it; changing them breaks every existing store.

/// The stable 64-bit hash of a stream's identity.
pub fn stable_hash(tenant: &str, entity_id: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    let bytes = tenant
        .bytes()
        .chain(std::iter::once(0xFF))
        .chain(entity_id.bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    fmix64(hash)
}

/// The partition of `(tenant, entity_id)` in a store of `partitions` partitions.
pub fn partition_for(tenant: &str, entity_id: &str, partitions: u16) -> u16 {
    let count = u64::from(partitions.max(1));
    // The remainder is below `partitions`, so it fits in a u16.
    (stable_hash(tenant, entity_id) % count) as u16
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These values are part of the on-disk format: they must never change.
    #[test]
    fn hash_is_pinned() {
        let vectors = [
            ("default", "user-123", 0xd7a7_feff_4781_1922_u64, 2u16),
            ("acme", "order-1", 0x0db0_a479_e61e_bc98, 24),
            ("", "", 0x1bbd_5c81_3c69_a8d7, 23),
            ("t", "", 0x7a31_292e_7c27_346a, 10),
        ];
        for (tenant, entity_id, hash, partition) in vectors {
            assert_eq!(stable_hash(tenant, entity_id), hash, "{tenant}/{entity_id}");
            assert_eq!(
                partition_for(tenant, entity_id, 32),
                partition,
                "{tenant}/{entity_id}"
            );
        }
    }

    #[test]
    fn separator_keeps_identities_apart() {
        assert_ne!(stable_hash("ab", "c"), stable_hash("a", "bc"));
    }

    #[test]
    fn partitions_spread_evenly() {
        let mut counts = [0u32; 32];
        for i in 0..32_000 {
            counts[usize::from(partition_for("t", &format!("order-{i}"), 32))] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(min >= Some(&800) && max <= Some(&1200), "{counts:?}");
    }
}
