//! The gateway's own metrics on its observability port: requests by operation and HTTP
//! status, how long they took (the brokers' time included), and how many streams it routes.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The gateway's metrics.
pub struct GatewayMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    routes: IntGauge,
}

impl GatewayMetrics {
    /// Registers every series.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "brook_gateway_requests_total",
                "Kinesis requests the gateway answered, by operation and HTTP status",
            ),
            &["operation", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "brook_gateway_request_duration_seconds",
                "Time from a request's arrival to its answer's head, the brokers' time included",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["operation"],
        )?;
        let routes = IntGauge::new(
            "brook_gateway_routed_streams",
            "Streams the gateway routes to (its Stream resources, or its --route pairs)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(routes.clone()))?;
        Ok(Self {
            registry,
            requests,
            duration,
            routes,
        })
    }

    /// Counts one answered request; `operation` is a Kinesis operation's name, or `unknown`
    /// (never the client's own text, which would make a series per garbage value).
    pub fn observe(&self, operation: &'static str, code: u16, seconds: f64) {
        self.requests
            .with_label_values(&[operation, &code.to_string()])
            .inc();
        self.duration
            .with_label_values(&[operation])
            .observe(seconds);
    }

    /// The text exposition, with the routed streams counted now.
    pub fn render(&self, routed_streams: usize) -> Vec<u8> {
        self.routes
            .set(i64::try_from(routed_streams).unwrap_or(i64::MAX));
        let mut text = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut text);
        text
    }
}
