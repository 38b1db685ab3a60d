//! Routing trades to deliver shards: `shard = fnv1a64(tid) mod N`. FNV-1a is fixed and
//! simple, so every transform replica (and any other tool) computes the same shard.

/// The 64-bit FNV-1a hash of a tid.
pub fn fnv1a64(tid: &str) -> u64 {
    tid.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The shard index of a tid among `shards` shards.
pub fn shard_of(tid: &str, shards: usize) -> usize {
    if shards <= 1 {
        0
    } else {
        (fnv1a64(tid) % shards as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_spread() {
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(shard_of("T0001", 1), 0);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of(&format!("T{i:05}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
