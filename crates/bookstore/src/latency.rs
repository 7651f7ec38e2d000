//! A log-bucketed latency histogram with a fixed layout, so the market can publish it in the
//! shared object as plain counters and any reader can take the difference of two copies.
//!
//! Buckets: one per nanosecond below 16 ns, then four per power of two (each at most 25 %
//! wide) up to 2³² ns (4.3 s); anything longer lands in the last bucket. A percentile is
//! reported as the upper end of its bucket, so it never understates. The `hdrhistogram` crate
//! (which the bench uses) keeps its counts in its own allocation and format; here the counts
//! must be words at fixed offsets of the object, hence this small scheme.

use serde::Serialize;

use crate::layout::LATENCY_BUCKETS;

/// Buckets below this many nanoseconds are one nanosecond wide.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 2;
const SUB: usize = 1 << SUB_BITS;

/// The bucket that counts a latency of `ns`.
pub fn bucket_of(ns: u64) -> usize {
    if ns < LINEAR {
        return ns as usize;
    }
    let exponent = 63 - ns.leading_zeros(); // ≥ 4
    let sub = ((ns >> (exponent - SUB_BITS)) as usize) & (SUB - 1);
    let bucket = LINEAR as usize + (exponent as usize - 4) * SUB + sub;
    bucket.min(LATENCY_BUCKETS - 1)
}

/// The latencies bucket `b` counts: `low..high` nanoseconds (the last bucket also counts
/// everything above its range).
pub fn bucket_range(b: usize) -> (u64, u64) {
    if b < LINEAR as usize {
        return (b as u64, b as u64 + 1);
    }
    let exponent = ((b - LINEAR as usize) / SUB + 4) as u32;
    let sub = ((b - LINEAR as usize) % SUB) as u64;
    let step = 1u64 << (exponent - SUB_BITS);
    ((SUB as u64 + sub) * step, (SUB as u64 + sub + 1) * step)
}

/// Counts of latencies by bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    counts: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; LATENCY_BUCKETS],
        }
    }

    /// A histogram with these counts (as read from the object: any values).
    pub fn from_counts(counts: Vec<u64>) -> Self {
        assert_eq!(counts.len(), LATENCY_BUCKETS, "one count per bucket");
        Self { counts }
    }

    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Counts `n` latencies of `ns` each; returns the bucket that counts them.
    pub fn record_n(&mut self, ns: u64, n: u64) -> usize {
        let bucket = bucket_of(ns);
        let count = &mut self.counts[bucket];
        *count = count.saturating_add(n);
        bucket
    }

    /// What was counted after `earlier` (a previous copy of the same cumulative histogram).
    /// A count that went down (a restarted market, a scribbled word) counts as zero.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// The latency at or below which a fraction `q` (0..=1) of the counted ones fall, as the
    /// upper end of its bucket; `None` if nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                return Some(bucket_range(b).1);
            }
        }
        Some(bucket_range(LATENCY_BUCKETS - 1).1)
    }

    /// The upper end of the highest bucket with a count.
    pub fn max_bound(&self) -> Option<u64> {
        let b = self.counts.iter().rposition(|&c| c > 0)?;
        Some(bucket_range(b).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_tile_the_range_without_gaps_or_overlaps() {
        let mut expected_low = 0;
        for b in 0..LATENCY_BUCKETS {
            let (low, high) = bucket_range(b);
            assert_eq!(
                low, expected_low,
                "bucket {b} starts where the one before ended"
            );
            assert!(high > low);
            assert!(
                high - low <= (low / 4).max(1),
                "bucket {b} is at most 25 % wide"
            );
            expected_low = high;
        }
        assert_eq!(expected_low, 1 << 32, "the buckets reach 4.3 s");
    }

    #[test]
    fn a_latency_beyond_the_last_bucket_is_counted_in_it() {
        assert_eq!(bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
        assert_eq!(bucket_of(1 << 40), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_the_upper_end_of_their_bucket() {
        let mut h = Histogram::new();
        h.record_n(1_000, 98);
        h.record_n(50_000, 2);
        let (_, high_1k) = bucket_range(bucket_of(1_000));
        assert_eq!(h.quantile(0.5), Some(high_1k));
        assert_eq!(h.quantile(0.98), Some(high_1k));
        assert_eq!(h.quantile(0.99), Some(bucket_range(bucket_of(50_000)).1));
        assert_eq!(h.max_bound(), h.quantile(1.0));
        assert_eq!(Histogram::new().quantile(0.5), None);
    }

    #[test]
    fn a_window_is_the_difference_of_two_copies_and_never_negative() {
        let mut then = Histogram::new();
        then.record_n(100, 5);
        let mut now = then.clone();
        now.record_n(2_000, 3);
        let window = now.since(&then);
        assert_eq!(window.total(), 3);
        assert_eq!(window.quantile(0.5), Some(bucket_range(bucket_of(2_000)).1));
        assert_eq!(
            then.since(&now).total(),
            0,
            "a count that went down counts as zero"
        );
    }

    proptest! {
        #[test]
        fn every_latency_falls_inside_its_bucket(ns in 0u64..(1 << 32)) {
            let (low, high) = bucket_range(bucket_of(ns));
            prop_assert!(low <= ns && ns < high);
        }

        #[test]
        fn hostile_counts_give_answers_not_panics(counts in proptest::collection::vec(any::<u64>(), LATENCY_BUCKETS), q in 0.0f64..=1.0) {
            let h = Histogram::from_counts(counts);
            let _ = h.quantile(q);
            let _ = h.max_bound();
            let _ = h.since(&Histogram::new()).total();
        }
    }
}
