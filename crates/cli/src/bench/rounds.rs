//! The rows whose ratios are targets, measured in rounds taken in turn: the floor and the
//! market in spin mode, iceoryx2, and the futex floor and the market in park mode in both
//! placements (see `placement.rs`).

use std::path::Path;

use hdrhistogram::Histogram;

use super::placement::Placement;
use super::{floor, histogram, iceoryx2_rtt, market_rtt, BenchResult, Floor, Percentiles};

/// Rounds per row, each row's rounds merged: a phase of noise on the shared machine, which can
/// last seconds, then falls on both rows of a ratio alike, not on whichever row it happened to
/// meet (one run measured a floor of 421 ns, three times its usual, and so a spin ratio of
/// 2.2).
const ROUNDS: u32 = 4;

pub(super) struct Rounds {
    pub(super) floor: Histogram<u64>,
    pub(super) spin: Histogram<u64>,
    /// iceoryx2's rounds, each percentile the median of the rounds' (its peer reports
    /// percentiles, not histograms to merge); `None` without its peer.
    pub(super) iceoryx2: Option<Percentiles>,
    /// The futex floor and the market in park mode, each process on a CPU of its own.
    pub(super) futex: Histogram<u64>,
    pub(super) park: Histogram<u64>,
    /// The same on one CPU.
    pub(super) futex_one_cpu: Histogram<u64>,
    pub(super) park_one_cpu: Histogram<u64>,
}

/// `n` round trips per row in all, in [`ROUNDS`] rounds.
pub(super) fn measure(
    n: u32,
    iceoryx2: Option<&Path>,
    progress: &dyn Fn(&str),
) -> BenchResult<Rounds> {
    let per_round = n.div_ceil(ROUNDS);
    let mut r = Rounds {
        floor: histogram(),
        spin: histogram(),
        iceoryx2: None,
        futex: histogram(),
        park: histogram(),
        futex_one_cpu: histogram(),
        park_one_cpu: histogram(),
    };
    let mut iceoryx2_rounds = Vec::new();
    for round in 1..=ROUNDS {
        let of = format!("(round {round} of {ROUNDS})");
        progress(&format!(
            "the floor (two processes spinning on one cache line) {of}"
        ));
        r.floor.add(floor(per_round, Floor::Spin, None)?)?;
        progress(&format!("market round trips, spin mode {of}"));
        r.spin
            .add(market_rtt(per_round, 1_000_000, "none", &[], None)?)?;
        if let Some(peer) = iceoryx2 {
            progress(&format!(
                "iceoryx2 request-response round trips (64-byte payload, both busy-polling) {of}"
            ));
            iceoryx2_rounds.push(iceoryx2_rtt(peer, per_round)?);
        }
        for (placement, on, futex, park) in [
            (Placement::TwoCpus, "two CPUs", &mut r.futex, &mut r.park),
            (
                Placement::OneCpu,
                "one CPU",
                &mut r.futex_one_cpu,
                &mut r.park_one_cpu,
            ),
        ] {
            progress(&format!(
                "the futex floor (two processes sleeping and waking on one word), {on} {of}"
            ));
            futex.add(floor(per_round, Floor::Futex, Some(placement))?)?;
            progress(&format!("market round trips, park mode, {on} {of}"));
            park.add(market_rtt(per_round, 0, "none", &[], Some(placement))?)?;
        }
    }
    r.iceoryx2 = (!iceoryx2_rounds.is_empty()).then(|| Percentiles::median_of(&iceoryx2_rounds));
    Ok(r)
}
