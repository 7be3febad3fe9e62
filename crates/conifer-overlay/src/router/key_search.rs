//! Searching a sorted array of key prefixes (the first eight bytes of each
//! public key, big-endian), as the route table and the SNEK index keep them.
//!
//! Public keys are uniformly distributed, so among `n` sorted keys the first
//! one not below `p` sits near `p × n / 2⁶⁴`, typically within √n / 2
//! places. A search starts there and gallops outwards in doubling steps until
//! the answer is bracketed, then bisects the bracket: at simulation scale,
//! where the arrays are out of cache, that reads a few neighbouring cache
//! lines (which [`probed`] lets a driver ask for ahead) instead of a binary
//! search's dozen scattered ones. Clustered keys (a keyspace attacker's)
//! only make the gallop longer: it is an exponential search, O(log n)
//! whatever the keys.

use crate::key::PublicKey;

/// The first eight bytes of `key`, as a number that sorts like the key.
pub fn prefix(key: &PublicKey) -> u64 {
    u64::from_be_bytes(key.0[..8].try_into().expect("8 bytes"))
}

/// Up to this many prefixes a search reads them all: a few neighbouring
/// cache lines, no branches to mispredict.
const SCAN: usize = 32;

/// Where the first prefix not below `p` would be if the keys were evenly spread.
fn guess(p: u64, n: usize) -> usize {
    ((u128::from(p) * n as u128) >> 64) as usize
}

/// The position of the first prefix not below `p` in `prefixes` (ascending).
pub fn prefix_bound(prefixes: &[u64], p: u64) -> usize {
    let n = prefixes.len();
    if n <= SCAN {
        return prefixes.iter().filter(|&&x| x < p).count();
    }
    let guess = guess(p, n);
    // Bracket the answer in `lo..=hi`.
    let (mut lo, mut hi);
    if prefixes[guess] < p {
        lo = guess + 1;
        hi = n;
        let mut step = 1;
        while guess + step < n {
            if prefixes[guess + step] >= p {
                hi = guess + step;
                break;
            }
            lo = guess + step + 1;
            step *= 2;
        }
    } else {
        lo = 0;
        hi = guess;
        let mut step = 1;
        while step <= guess {
            if prefixes[guess - step] < p {
                lo = guess - step + 1;
                break;
            }
            hi = guess - step;
            step *= 2;
        }
    }
    lo + prefixes[lo..hi].partition_point(|&x| x < p)
}

/// The position of the first key not below `key`, in keys sorted with
/// their `prefixes`; `key_at(i)` reads the whole key at `i`, which only
/// keys sharing `key`'s prefix need (adjacent keys, as a keyspace attacker
/// makes them).
pub fn lower_bound<'a>(
    prefixes: &[u64],
    key: &PublicKey,
    key_at: impl Fn(usize) -> &'a PublicKey,
) -> usize {
    let p = prefix(key);
    let mut i = prefix_bound(prefixes, p);
    while i < prefixes.len() && prefixes[i] == p && key_at(i) < key {
        i += 1;
    }
    i
}

#[cfg(feature = "prefetch")]
/// The positions a search for `p` most likely reads: all of a short array,
/// else the guess and 16 places either side (the first probes of the
/// gallop, and where the answer usually is). For prefetch hints.
pub fn probed(prefixes: &[u64], p: u64) -> std::ops::Range<usize> {
    let n = prefixes.len();
    if n <= SCAN {
        return 0..n;
    }
    let guess = guess(p, n);
    guess.saturating_sub(16)..(guess + 17).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agrees with `partition_point` on spread, clustered and repeated
    /// prefixes, for every length around the scan limit and beyond.
    #[test]
    fn matches_partition_point() {
        let mut x = 3u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x
        };
        for n in (0..80).chain([500, 3_000]) {
            for shape in 0..3 {
                let mut v: Vec<u64> = (0..n)
                    .map(|_| match shape {
                        0 => next(),
                        1 => next() % 1_000,                  // all near zero
                        _ => u64::MAX - (next() % 4) * 1_000, // few values, near the top
                    })
                    .collect();
                v.sort_unstable();
                for probe in v
                    .iter()
                    .copied()
                    .chain((0..50).map(|_| next()))
                    .chain([0, u64::MAX])
                {
                    for p in [probe, probe.wrapping_add(1), probe.wrapping_sub(1)] {
                        let want = v.partition_point(|&y| y < p);
                        assert_eq!(prefix_bound(&v, p), want, "n {n} shape {shape} p {p}");
                        #[cfg(feature = "prefetch")]
                        {
                            let r = probed(&v, p);
                            assert!(r.start <= r.end && r.end <= n);
                        }
                    }
                }
            }
        }
    }
}
