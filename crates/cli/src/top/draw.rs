//! `top`'s picture: a header (market and journal), the shelf with its gauge, activity
//! sparklines and the service latency, the clients, and the warnings. Laid out for 80×24 and
//! growing with the terminal.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Gauge, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use super::{ClientSort, Screen};
use crate::watch::{format_ago, format_bytes, format_count, format_ns, format_uptime, Sample};
use bookstore::view::SnapshotRow;
use engine::Cents;

/// Seconds the sparklines cover.
const SPARK_SECONDS: usize = 60;

pub fn draw(frame: &mut Frame, screen: &Screen) {
    let [header, middle, clients, warnings, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(11),
        Constraint::Min(6),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let Some(sample) = screen.watch.latest() else {
        let text = screen
            .problem
            .clone()
            .unwrap_or_else(|| "reading the store…".into());
        frame.render_widget(Paragraph::new(text), header);
        draw_footer(frame, footer, screen);
        return;
    };
    draw_header(frame, header, screen, sample);
    let [shelf, activity] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    draw_shelf(frame, shelf, sample);
    draw_activity(frame, activity, screen, sample);
    draw_clients(frame, clients, screen.sort, sample);
    draw_warnings(frame, warnings, sample);
    draw_footer(frame, footer, screen);
}

fn draw_header(frame: &mut Frame, area: Rect, screen: &Screen, s: &Sample) {
    let st = &s.stats;
    let uptime = format_uptime(s.wall_ms.saturating_sub(st.started_at_ms) / 1000);
    let running = if screen.market_exited {
        Span::styled(
            " market exited: the last picture it published ",
            Style::new().fg(Color::White).bg(Color::Red).bold(),
        )
    } else {
        Span::raw(format!("up {uptime}, {}", s.state))
    };
    let mut first = vec![
        Span::styled(
            format!(" {} ", s.name),
            Style::new().add_modifier(Modifier::REVERSED),
        ),
        Span::raw(format!(" market pid {} ", s.market_pid)),
        running,
    ];
    if screen.paused {
        first.push(Span::styled(
            "  PAUSED",
            Style::new().fg(Color::Yellow).bold(),
        ));
    }
    if let Some(problem) = &screen.problem {
        first.push(Span::styled(
            format!("  {problem}"),
            Style::new().fg(Color::Red),
        ));
    }
    let v = &s.view;
    let balanced = v.books_listed == v.books_sold + v.books_on_shelf;
    let check = if balanced {
        Span::styled("✓", Style::new().fg(Color::Green))
    } else {
        Span::styled("✗ UNBALANCED", Style::new().fg(Color::Red).bold())
    };
    let synced = if st.durability == "none" {
        "never synced".to_string()
    } else {
        format!("synced {}", format_ago(st.last_sync_at_ms, s.wall_ms))
    };
    let second = Line::from(format!(
        " journal: durability {}, {} ({} syncs), {synced}",
        st.durability,
        format_bytes(st.journal_bytes),
        format_count(st.journal_syncs),
    ));
    let third = Line::from(vec![
        Span::raw(format!(
            " books: listed {} = {} sold + {} on the shelf ",
            v.books_listed, v.books_sold, v.books_on_shelf,
        )),
        check,
        Span::raw(format!(" · revenue {}", Cents(v.revenue_cents))),
    ]);
    frame.render_widget(Paragraph::new(vec![Line::from(first), second, third]), area);
}

fn draw_shelf(frame: &mut Frame, area: Rect, s: &Sample) {
    let block = Block::bordered().title(" shelf ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [gauge, table] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let on_shelf = s.view.books_on_shelf;
    let ratio = if s.capacity == 0 {
        0.0
    } else {
        (on_shelf as f64 / f64::from(s.capacity)).clamp(0.0, 1.0)
    };
    let colour = if ratio >= 1.0 {
        Color::Red
    } else if ratio >= 0.8 {
        Color::Yellow
    } else {
        Color::Green
    };
    frame.render_widget(
        Gauge::default()
            .gauge_style(Style::new().fg(colour).bg(Color::DarkGray))
            .ratio(ratio)
            .label(format!("{on_shelf}/{} books", s.capacity)),
        gauge,
    );
    // The busiest titles: most copies on the shelf, then most sold lately (among the view's
    // recent trades), each counted once.
    let mut rows: Vec<(&SnapshotRow, u64)> = s
        .view
        .shelf
        .iter()
        .map(|row| {
            let sold = s
                .view
                .recent_trades
                .iter()
                .filter(|t| t.title == row.title)
                .map(|t| t.qty)
                .sum();
            (row, sold)
        })
        .collect();
    rows.sort_by(|(a, a_sold), (b, b_sold)| {
        b.qty
            .cmp(&a.qty)
            .then_with(|| b_sold.cmp(a_sold))
            .then_with(|| a.title.cmp(&b.title))
    });
    let rows = rows.into_iter().map(|(r, sold)| {
        Row::new(vec![
            Cell::from(r.title.clone()),
            Cell::from(Cents(r.price_cents).to_string()),
            Cell::from(r.qty.to_string()),
            Cell::from(sold.to_string()),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(8),
                Constraint::Length(9),
                Constraint::Length(4),
                Constraint::Length(5),
            ],
        )
        .header(Row::new(vec!["title", "price", "qty", "sold"]).style(Style::new().bold())),
        table,
    );
}

fn draw_activity(frame: &mut Frame, area: Rect, screen: &Screen, s: &Sample) {
    let block = Block::bordered().title(format!(" activity, last {SPARK_SECONDS} s "));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [orders_label, orders, trades_label, trades, latency_label, latency, totals] =
        Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(inner);
    // The sparklines show as many of the last seconds as fit, newest on the right.
    let width = (inner.width as usize).min(SPARK_SECONDS);
    let orders_per_s = s.stats.per_second(s.wall_ms, width, false);
    let trades_per_s = s.stats.per_second(s.wall_ms, width, true);
    let last = |v: &[u64]| v.last().copied().unwrap_or(0);
    let peak = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Paragraph::new(format!(
            "orders/s {} (peak {})",
            format_count(last(&orders_per_s)),
            format_count(peak(&orders_per_s))
        )),
        orders_label,
    );
    frame.render_widget(
        Sparkline::default()
            .data(orders_per_s.iter().copied())
            .style(Style::new().fg(Color::Cyan)),
        orders,
    );
    frame.render_widget(
        Paragraph::new(format!(
            "trades/s {} (peak {})",
            format_count(last(&trades_per_s)),
            format_count(peak(&trades_per_s))
        )),
        trades_label,
    );
    frame.render_widget(
        Sparkline::default()
            .data(trades_per_s.iter().copied())
            .style(Style::new().fg(Color::Magenta)),
        trades,
    );
    let (label, text) = match screen.watch.latency() {
        Some(w) if w.requests > 0 => (
            format!(
                "service latency, {} requests in 1 s:",
                format_count(w.requests)
            ),
            format!(
                "p50 {}  p99 {}  max {}",
                w.p50_ns.map_or("-".into(), format_ns),
                w.p99_ns.map_or("-".into(), format_ns),
                w.max_ns.map_or("-".into(), format_ns),
            ),
        ),
        _ => ("service latency, last 1 s:".into(), "no requests".into()),
    };
    frame.render_widget(Paragraph::new(label), latency_label);
    frame.render_widget(Paragraph::new(text).bold(), latency);
    let st = &s.stats;
    let mean = st
        .latency_sum_ns
        .checked_div(st.latency_count)
        .map_or("-".into(), format_ns);
    frame.render_widget(
        Paragraph::new(format!(
            "{} req, {} trades, mean {mean}",
            format_count(s.view.requests),
            format_count(s.view.trades)
        )),
        totals,
    );
}

/// A client as `top` shows it: its slot as the slot table says, and what the market counts.
struct ClientLine {
    slot: u32,
    pid: u32,
    role: &'static str,
    state: &'static str,
    requests: u64,
    in_flight: u32,
    resting: u64,
    last_ms: u64,
}

fn client_lines(s: &Sample) -> Vec<ClientLine> {
    s.slots
        .iter()
        .map(|&(slot, report)| {
            let counted = s.stats.client(slot, report.client_id);
            ClientLine {
                slot,
                pid: report.pid,
                role: counted.map_or("?", |c| c.role.name()),
                state: report.state.name(),
                requests: counted.map_or(0, |c| c.requests),
                in_flight: report.requests_queued,
                resting: counted.map_or(0, |c| c.resting_buys),
                last_ms: counted.map_or(0, |c| c.last_request_at_ms),
            }
        })
        .collect()
}

fn draw_clients(frame: &mut Frame, area: Rect, sort: ClientSort, s: &Sample) {
    let mut lines = client_lines(s);
    match sort {
        ClientSort::Slot => lines.sort_by_key(|c| c.slot),
        ClientSort::Requests => lines.sort_by_key(|c| std::cmp::Reverse(c.requests)),
        ClientSort::Activity => lines.sort_by_key(|c| std::cmp::Reverse(c.last_ms)),
        ClientSort::Resting => lines.sort_by_key(|c| std::cmp::Reverse(c.resting)),
    }
    let title = format!(" clients: {} attached, by {} ", lines.len(), sort.name());
    let rows = lines.iter().map(|c| {
        Row::new(vec![
            c.slot.to_string(),
            c.pid.to_string(),
            c.role.to_string(),
            c.state.to_string(),
            format_count(c.requests),
            c.in_flight.to_string(),
            c.resting.to_string(),
            format_ago(c.last_ms, s.wall_ms),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(4),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(vec![
                "slot",
                "pid",
                "role",
                "state",
                "requests",
                "in flight",
                "resting",
                "last",
            ])
            .style(Style::new().bold()),
        )
        .block(Block::bordered().title(title)),
        area,
    );
}

fn draw_warnings(frame: &mut Frame, area: Rect, s: &Sample) {
    let counted: Vec<Span> = s
        .stats
        .warnings
        .iter()
        .filter(|w| w.count > 0)
        .map(|w| {
            Span::styled(
                format!(" {} {};", w.name, w.count),
                Style::new().fg(Color::Yellow),
            )
        })
        .collect();
    let line = if counted.is_empty() {
        Line::from(" warnings: none")
    } else {
        let mut spans = vec![Span::raw(" warnings:")];
        spans.extend(counted);
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_footer(frame: &mut Frame, area: Rect, screen: &Screen) {
    let pause = if screen.paused { "resume" } else { "pause" };
    frame.render_widget(
        Paragraph::new(format!(
            " q quit · p {pause} · s sort clients (now by {})",
            screen.sort.name()
        ))
        .style(Style::new().add_modifier(Modifier::DIM)),
        area,
    );
}
