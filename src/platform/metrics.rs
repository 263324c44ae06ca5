//! Prometheus metrics: a `prometheus-client` registry, rendered at `/metrics` in the Prometheus
//! text format (version 0.0.4).
//!
//! Labels are configuration identifiers (agreement and destination ids) and stable codes only:
//! never anything from a payload, and never an unknown agreement id a caller typed (that is
//! counted under `agreement="unknown"`), so label cardinality stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

fn seconds_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransferLabels {
    agreement: String,
    outcome: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    destination: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnrecordedLabels {
    system: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CrlLabels {
    crl: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

impl DestinationLabels {
    fn of(destination: &str) -> Self {
        Self {
            destination: destination.into(),
        }
    }
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    transfers: Family<TransferLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    unrecorded: Family<UnrecordedLabels, Counter>,
    crl_next_update: Family<CrlLabels, Gauge>,
    outbox_depth: Family<DestinationLabels, Gauge>,
    circuit_open: Family<DestinationLabels, Gauge>,
    reviews_overdue: Gauge,
    decision_seconds: Histogram,
    delivery_seconds: Family<DestinationLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let transfers = Family::default();
        let attempts = Family::default();
        let unrecorded = Family::default();
        let crl_next_update = Family::default();
        let outbox_depth = Family::default();
        let circuit_open = Family::default();
        let reviews_overdue = Gauge::default();
        let decision_seconds = seconds_histogram();
        let delivery_seconds: Family<_, _, fn() -> Histogram> = Family::new_with_constructor(seconds_histogram);
        // The registry holds handles to the same metrics. It adds each help text's full stop and
        // each counter's `_total`; it renders the metrics in the order registered here.
        let mut registry = Registry::default();
        registry.register(
            "isa_transfers",
            "Transfer decisions by agreement, outcome and refusal reason",
            transfers.clone(),
        );
        registry.register(
            "isa_delivery_attempts",
            "Delivery attempts by destination and result",
            attempts.clone(),
        );
        registry.register(
            "isa_requests_refused_unrecorded",
            "Requests refused before anyone was accountable (rate limit, no acceptable user token, a \
             system that may not send), by system and reason; counted here and logged, not written to \
             the ledger",
            unrecorded.clone(),
        );
        registry.register(
            "isa_crl_next_update_seconds",
            "Each client-certificate CRL's next-update time (Unix seconds); past it every client is refused",
            crl_next_update.clone(),
        );
        registry.register(
            "isa_outbox_depth",
            "Transfers waiting for delivery, by destination",
            outbox_depth.clone(),
        );
        registry.register(
            "isa_circuit_open",
            "Whether the destination's circuit breaker is open (1) or not (0)",
            circuit_open.clone(),
        );
        registry.register(
            "isa_reviews_overdue",
            "Urgent transfers whose director review is overdue",
            reviews_overdue.clone(),
        );
        registry.register(
            "isa_decision_seconds",
            "Time to decide and record a transfer",
            decision_seconds.clone(),
        );
        registry.register(
            "isa_delivery_seconds",
            "Time from acceptance to delivery",
            delivery_seconds.clone(),
        );
        Self {
            registry,
            transfers,
            attempts,
            unrecorded,
            crl_next_update,
            outbox_depth,
            circuit_open,
            reviews_overdue,
            decision_seconds,
            delivery_seconds,
        }
    }
}

impl Metrics {
    /// A request refused before anyone was accountable: `system` a configured id, `reason` a
    /// stable code (bounded labels both).
    pub fn refused_unrecorded(&self, system: &str, reason: &str) {
        self.unrecorded
            .get_or_create(&UnrecordedLabels {
                system: system.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// A decision: `outcome` is `accepted` or `refused`, `reason` a refusal code or empty.
    pub fn transfer(&self, agreement: &str, outcome: &str, reason: &str, seconds: f64) {
        self.transfers
            .get_or_create(&TransferLabels {
                agreement: agreement.into(),
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
        self.decision_seconds.observe(seconds);
    }

    /// A delivery attempt: `result` is `delivered`, `retry` or `dead_letter`.
    pub fn attempt(&self, destination: &str, result: &str) {
        self.attempts
            .get_or_create(&AttemptLabels {
                destination: destination.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Seconds from acceptance to delivery.
    pub fn delivered_after(&self, destination: &str, seconds: f64) {
        self.delivery_seconds
            .get_or_create(&DestinationLabels::of(destination))
            .observe(seconds);
    }

    pub fn set_outbox_depth(&self, depth: &[(String, i64)], destinations: &[String]) {
        for d in destinations {
            self.outbox_depth.get_or_create(&DestinationLabels::of(d)).set(0);
        }
        for (d, n) in depth {
            self.outbox_depth.get_or_create(&DestinationLabels::of(d)).set(*n);
        }
    }

    /// A CRL's next-update time; `crl` is a configured file name.
    pub fn set_crl_next_update(&self, crl: &str, unix_secs: i64) {
        self.crl_next_update
            .get_or_create(&CrlLabels { crl: crl.into() })
            .set(unix_secs);
    }

    pub fn set_breaker(&self, destination: &str, open: bool) {
        self.circuit_open
            .get_or_create(&DestinationLabels::of(destination))
            .set(i64::from(open));
    }

    pub fn set_reviews_overdue(&self, n: usize) {
        self.reviews_overdue.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The Prometheus text (version 0.0.4; see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and the encoder has no failure of its own.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_labels_and_help_are_those_the_readme_lists() {
        let m = Metrics::default();
        m.transfer("nvtt-gp-update", "accepted", "", 0.0123);
        m.transfer("unknown", "refused", "unknown_agreement", 0.001);
        m.attempt("y99001-gp-drop", "delivered");
        m.delivered_after("y99001-gp-drop", 0.2);
        m.set_outbox_depth(&[("gp-https".into(), 2)], &["gp-https".into(), "y99001-gp-drop".into()]);
        m.set_breaker("gp-https", true);
        m.set_reviews_overdue(1);
        let text = m.render();
        for line in [
            "# HELP isa_transfers_total Transfer decisions by agreement, outcome and refusal reason.",
            "# TYPE isa_transfers_total counter",
            "isa_transfers_total{agreement=\"nvtt-gp-update\",outcome=\"accepted\",reason=\"\"} 1",
            "isa_transfers_total{agreement=\"unknown\",outcome=\"refused\",reason=\"unknown_agreement\"} 1",
            "# HELP isa_delivery_attempts_total Delivery attempts by destination and result.",
            "# TYPE isa_delivery_attempts_total counter",
            "isa_delivery_attempts_total{destination=\"y99001-gp-drop\",result=\"delivered\"} 1",
            "# HELP isa_outbox_depth Transfers waiting for delivery, by destination.",
            "# TYPE isa_outbox_depth gauge",
            "isa_outbox_depth{destination=\"gp-https\"} 2",
            "isa_outbox_depth{destination=\"y99001-gp-drop\"} 0",
            "# HELP isa_circuit_open Whether the destination's circuit breaker is open (1) or not (0).",
            "# TYPE isa_circuit_open gauge",
            "isa_circuit_open{destination=\"gp-https\"} 1",
            "# HELP isa_reviews_overdue Urgent transfers whose director review is overdue.",
            "# TYPE isa_reviews_overdue gauge",
            "isa_reviews_overdue 1",
            "# HELP isa_decision_seconds Time to decide and record a transfer.",
            "# TYPE isa_decision_seconds histogram",
            "isa_decision_seconds_bucket{le=\"0.005\"} 1",
            "isa_decision_seconds_bucket{le=\"0.025\"} 2",
            "isa_decision_seconds_bucket{le=\"300\"} 2",
            "isa_decision_seconds_bucket{le=\"+Inf\"} 2",
            "isa_decision_seconds_count 2",
            "# HELP isa_delivery_seconds Time from acceptance to delivery.",
            "# TYPE isa_delivery_seconds histogram",
            "isa_delivery_seconds_bucket{destination=\"y99001-gp-drop\",le=\"0.1\"} 0",
            "isa_delivery_seconds_bucket{destination=\"y99001-gp-drop\",le=\"0.25\"} 1",
            "isa_delivery_seconds_sum{destination=\"y99001-gp-drop\"} 0.2",
            "isa_delivery_seconds_count{destination=\"y99001-gp-drop\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
