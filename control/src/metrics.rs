//! Prometheus metrics of the control plane, served at `/metrics` in the text format.
//! Named by subsystem (`vocalized_http_*`); labels never carry ids, emails or numbers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route template (e.g. `/api/v1/workspaces/{workspace_id}`), not the raw
    /// path, so ids never become label values.
    pub route: String,
    pub status: u16,
}

/// Renders another exposition to append (the media plane's).
pub type Renderer = Box<dyn Fn() -> String + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    /// Other planes' expositions served from the same `/metrics` (the media plane's, in a
    /// single-process deployment).
    extra: std::sync::RwLock<Vec<Renderer>>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vocalized");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 14))) as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            http_duration.clone(),
        );
        Self {
            registry,
            extra: std::sync::RwLock::new(Vec::new()),
            http_requests,
            http_duration,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        for render in self.extra.read().expect("metrics lock").iter() {
            out.push_str(&render());
        }
        out.push_str("# EOF\n");
        out
    }

    /// Serves `render`'s exposition from this `/metrics` too.
    pub fn add_renderer(&self, render: Renderer) {
        self.extra.write().expect("metrics lock").push(render);
    }
}
