//! Prometheus metrics, rendered as text at `/metrics`.
//!
//! Labels are configuration identifiers (agreement and destination ids) and stable codes only:
//! never anything from a payload, and never an unknown agreement id a caller typed (that is
//! counted under `agreement="unknown"`), so label cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    transfers: BTreeMap<(String, String, String), u64>,
    attempts: BTreeMap<(String, String), u64>,
    delivery_seconds: BTreeMap<String, Histogram>,
    decision_seconds: Histogram,
    outbox_depth: BTreeMap<String, i64>,
    breaker_open: BTreeMap<String, bool>,
    reviews_overdue: usize,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A poisoned lock only means a panic elsewhere mid-update; the counters are still usable.
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// A decision: `outcome` is `accepted` or `refused`, `reason` a refusal code or empty.
    pub fn transfer(&self, agreement: &str, outcome: &str, reason: &str, seconds: f64) {
        self.with(|m| {
            *m.transfers
                .entry((agreement.into(), outcome.into(), reason.into()))
                .or_default() += 1;
            m.decision_seconds.observe(seconds);
        });
    }

    /// A delivery attempt: `result` is `delivered`, `retry` or `dead_letter`.
    pub fn attempt(&self, destination: &str, result: &str) {
        self.with(|m| *m.attempts.entry((destination.into(), result.into())).or_default() += 1);
    }

    /// Seconds from acceptance to delivery.
    pub fn delivered_after(&self, destination: &str, seconds: f64) {
        self.with(|m| {
            m.delivery_seconds
                .entry(destination.into())
                .or_default()
                .observe(seconds)
        });
    }

    pub fn set_outbox_depth(&self, depth: &[(String, i64)], destinations: &[String]) {
        self.with(|m| {
            for d in destinations {
                m.outbox_depth.insert(d.clone(), 0);
            }
            for (d, n) in depth {
                m.outbox_depth.insert(d.clone(), *n);
            }
        });
    }

    pub fn set_breaker(&self, destination: &str, open: bool) {
        self.with(|m| {
            m.breaker_open.insert(destination.into(), open);
        });
    }

    pub fn set_reviews_overdue(&self, n: usize) {
        self.with(|m| m.reviews_overdue = n);
    }

    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "# HELP isa_transfers_total Transfer decisions by agreement, outcome and refusal reason."
            );
            let _ = writeln!(out, "# TYPE isa_transfers_total counter");
            for ((a, o, r), n) in &m.transfers {
                let _ = writeln!(
                    out,
                    "isa_transfers_total{{agreement=\"{}\",outcome=\"{}\",reason=\"{}\"}} {n}",
                    escape(a),
                    escape(o),
                    escape(r)
                );
            }
            let _ = writeln!(
                out,
                "# HELP isa_delivery_attempts_total Delivery attempts by destination and result."
            );
            let _ = writeln!(out, "# TYPE isa_delivery_attempts_total counter");
            for ((d, r), n) in &m.attempts {
                let _ = writeln!(
                    out,
                    "isa_delivery_attempts_total{{destination=\"{}\",result=\"{}\"}} {n}",
                    escape(d),
                    escape(r)
                );
            }
            let _ = writeln!(
                out,
                "# HELP isa_outbox_depth Transfers waiting for delivery, by destination."
            );
            let _ = writeln!(out, "# TYPE isa_outbox_depth gauge");
            for (d, n) in &m.outbox_depth {
                let _ = writeln!(out, "isa_outbox_depth{{destination=\"{}\"}} {n}", escape(d));
            }
            let _ = writeln!(
                out,
                "# HELP isa_circuit_open Whether the destination's circuit breaker is open (1) or not (0)."
            );
            let _ = writeln!(out, "# TYPE isa_circuit_open gauge");
            for (d, open) in &m.breaker_open {
                let _ = writeln!(
                    out,
                    "isa_circuit_open{{destination=\"{}\"}} {}",
                    escape(d),
                    u8::from(*open)
                );
            }
            let _ = writeln!(
                out,
                "# HELP isa_reviews_overdue Urgent transfers whose director review is overdue."
            );
            let _ = writeln!(out, "# TYPE isa_reviews_overdue gauge");
            let _ = writeln!(out, "isa_reviews_overdue {}", m.reviews_overdue);
            histogram(
                &mut out,
                "isa_decision_seconds",
                "Time to decide and record a transfer.",
                "",
                &m.decision_seconds,
            );
            for (d, h) in &m.delivery_seconds {
                let label = format!("destination=\"{}\",", escape(d));
                histogram(
                    &mut out,
                    "isa_delivery_seconds",
                    "Time from acceptance to delivery.",
                    &label,
                    h,
                );
            }
            out
        })
    }
}

fn histogram(out: &mut String, name: &str, help: &str, labels: &str, h: &Histogram) {
    if !out.contains(&format!("# TYPE {name} ")) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
    }
    for (b, c) in BUCKETS.iter().zip(h.counts) {
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", h.count);
    let trimmed = labels.trim_end_matches(',');
    let braces = if trimmed.is_empty() {
        String::new()
    } else {
        format!("{{{trimmed}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}
