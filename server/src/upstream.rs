//! Where KIE calls go: KIE itself, the simulator (`--simulate`), or nowhere ("Not
//! configured"), resolved once at start, and the KIE client for it.

use std::sync::Arc;
use std::time::Duration;

use app::view::Upstream as UpstreamView;
use gateway::Secret;
use gateway::kie::{ClientOptions, KieClient};
use gateway::metrics::Metrics;

use crate::config::Config;

/// Where KIE calls go: resolved once at start.
#[derive(Clone, Debug)]
pub enum Upstream {
    NotConfigured,
    Kie { base: url::Url, key: Secret },
    Simulator { base: url::Url, key: Secret },
}

impl Upstream {
    pub fn from_config(config: &Config) -> Upstream {
        match &config.kie_key {
            Some((key, _)) => Upstream::Kie { base: config.kie_base_url.clone(), key: key.clone() },
            None => Upstream::NotConfigured,
        }
    }

    pub(crate) fn endpoint(&self) -> Option<(&url::Url, &Secret)> {
        match self {
            Upstream::NotConfigured => None,
            Upstream::Kie { base, key } | Upstream::Simulator { base, key } => Some((base, key)),
        }
    }

    /// A client for this upstream with the given request timeout and attempts for reads.
    pub fn client(&self, timeout: Duration, attempts: u32, metrics: &Arc<Metrics>) -> Option<KieClient> {
        let (base, key) = self.endpoint()?;
        let opts = ClientOptions { timeout, connect_timeout: timeout.min(Duration::from_secs(5)), attempts, metrics: Some(metrics.clone()), ..Default::default() };
        match KieClient::new(base.clone(), key.clone(), opts) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the KIE client");
                None
            }
        }
    }

    pub(crate) fn view(&self) -> UpstreamView {
        let host = |u: &url::Url| format!("{}:{}", u.host_str().unwrap_or_default(), u.port_or_known_default().unwrap_or_default());
        match self {
            Upstream::NotConfigured => UpstreamView::NotConfigured,
            Upstream::Kie { base, .. } => UpstreamView::Kie { host: base.host_str().unwrap_or_default().to_string() },
            Upstream::Simulator { base, .. } => UpstreamView::Simulator { host: host(base) },
        }
    }
}
