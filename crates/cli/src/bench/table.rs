//! The bench's report as a table: every latency row against the floor, the throughputs, the
//! restart, and each figure against its target.

use super::Report;

pub(super) fn table(r: &Report) -> String {
    let base = r.floor_rtt_ns.p50.max(1) as f64;
    let mut s = format!(
        "machine: {}; {} round trips per row\n\n",
        r.machine, r.round_trips
    );
    s += &format!(
        "{:<40} {:>10} {:>10} {:>10} {:>11}\n",
        "round trip (ns)", "p50", "p99", "p99.9", "p50/floor"
    );
    let rows = [
        (
            "floor: shared cache line, both spinning",
            Some(r.floor_rtt_ns),
        ),
        (
            "futex floor, two CPUs: sleeping, woken",
            Some(r.futex_rtt_ns),
        ),
        ("futex floor, one CPU", Some(r.futex_one_cpu_rtt_ns)),
        ("pipe ping-pong", Some(r.pipe_rtt_ns)),
        ("Unix-socket ping-pong", Some(r.uds_rtt_ns)),
        (
            "market, spin mode (buy that fills)",
            Some(r.market_spin_rtt_ns),
        ),
        ("iceoryx2 request-response, 64 B", r.iceoryx2_rtt_ns),
        (
            "market alone: client + pass, one thread",
            Some(r.market_alone_ns),
        ),
        ("market, park mode, two CPUs", Some(r.market_park_rtt_ns)),
        (
            "market, park mode, one CPU",
            Some(r.market_park_one_cpu_rtt_ns),
        ),
    ];
    for (label, p) in rows.into_iter().filter_map(|(l, p)| Some((l, p?))) {
        s += &format!(
            "{label:<40} {:>10} {:>10} {:>10} {:>10.1}×\n",
            p.p50,
            p.p99,
            p.p999,
            p.p50 as f64 / base
        );
    }
    s += &format!(
        "\n{:<40} {:>12.0}\n",
        "orders/s end to end (1 seller + 1 buyer)", r.orders_per_sec
    );
    s += &format!(
        "{:<40} {:>12.0} ({:.2}× the unsynced rate)\n",
        "  same, journal fsynced per batch",
        r.orders_per_sec_fsync,
        r.orders_per_sec_fsync / r.orders_per_sec
    );
    s += &format!(
        "{:<40} {:>12.0}\n",
        "engine alone, ops/s", r.engine_ops_per_sec
    );
    s += &format!(
        "{:<40} {:>12.1}%\n",
        "end to end / engine alone",
        100.0 * r.orders_per_sec / r.engine_ops_per_sec
    );
    if let Some(restart) = &r.restart {
        s += &format!(
            "{:<40} {:>12.1} ms (snapshot at command {}, then {} replayed; {} segment files, {:.1} MB on disk)\n",
            format!("restart after {} commands", restart.history_commands),
            restart.ms,
            restart.from_snapshot,
            restart.replayed_commands,
            restart.segments_on_disk,
            restart.journal_bytes_on_disk as f64 / 1e6
        );
    }
    if let Some(rep) = &r.replicated {
        s += &format!(
            "{:<40} {:>12.0} ({:.2}× the unsynced rate; round trip p50 {} ns, p99 {} ns over {})\n",
            "replicated to 3 JetStream servers",
            rep.orders_per_sec,
            rep.orders_per_sec / r.orders_per_sec,
            rep.rtt_ns.p50,
            rep.rtt_ns.p99,
            rep.round_trips
        );
    }
    s += "\nratios against the targets (see README, \"Performance\")\n";
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let against_iceoryx2 = r.iceoryx2_rtt_ns.map(|ice| {
        (
            "iceoryx2 p50 / spin p50",
            ratio(ice.p50, r.market_spin_rtt_ns.p50),
            3.0,
            false,
        )
    });
    for (label, value, target, at_most) in [
        (
            "spin p50 / floor p50",
            ratio(r.market_spin_rtt_ns.p50, r.floor_rtt_ns.p50),
            2.0,
            true,
        ),
        (
            "spin p99 / floor p99",
            ratio(r.market_spin_rtt_ns.p99, r.floor_rtt_ns.p99),
            3.0,
            true,
        ),
        (
            "park p50 / futex p50, two CPUs",
            ratio(r.market_park_rtt_ns.p50, r.futex_rtt_ns.p50),
            1.2,
            true,
        ),
        (
            "park p50 / futex p50, one CPU",
            ratio(r.market_park_one_cpu_rtt_ns.p50, r.futex_one_cpu_rtt_ns.p50),
            1.2,
            true,
        ),
        (
            "fsynced / unsynced orders/s",
            r.orders_per_sec_fsync / r.orders_per_sec,
            0.8,
            false,
        ),
        (
            "orders/s end to end, millions",
            r.orders_per_sec / 1e6,
            10.0,
            false,
        ),
        (
            "engine ops/s, millions",
            r.engine_ops_per_sec / 1e6,
            30.0,
            false,
        ),
    ]
    .into_iter()
    .chain(against_iceoryx2)
    .chain(
        r.restart
            .map(|restart| ("restart, ms", restart.ms, 100.0, true)),
    ) {
        let (sign, met) = if at_most {
            ("≤", value <= target)
        } else {
            ("≥", value >= target)
        };
        s += &format!(
            "  {label:<38} {value:>10.3}  target {sign} {target:<5} {}\n",
            if met { "met" } else { "not met" }
        );
    }
    if r.iceoryx2_rtt_ns.is_none() {
        s +=
            "  iceoryx2 p50 / spin p50: not measured (peers/compare builds the peer and runs it)\n";
    }
    s
}
