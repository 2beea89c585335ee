//! The shared, cheaply cloneable handle every handler receives.

use crate::auth::tokens::TokenKeys;
use crate::calls::health::HealthMonitor;
use crate::calls::link::LiveCall;
use crate::calls::slots::CallSlots;
use crate::config::ControlConfig;
use crate::db::Db;
use crate::http::ratelimit::RateLimiter;
use crate::metrics::Metrics;
use dashmap::DashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<ControlConfig>,
    pub keys: TokenKeys,
    pub limiter: Arc<RateLimiter>,
    pub metrics: Arc<Metrics>,
    /// Calls in progress on this node, by call id.
    pub live: Arc<DashMap<String, Arc<LiveCall>>>,
    /// Voice provider health on this node: fed by call events, read by call routing.
    pub health: Arc<HealthMonitor>,
    /// How many calls each workspace and browser address has open on this node.
    pub slots: Arc<CallSlots>,
}

impl AppState {
    pub fn new(db: Db, config: ControlConfig) -> Self {
        Self {
            keys: TokenKeys::derive(&config.master_key),
            limiter: Arc::new(RateLimiter::new(config.rate_limits.clone())),
            metrics: Arc::new(Metrics::default()),
            live: Arc::new(DashMap::new()),
            health: Arc::new(HealthMonitor::default()),
            slots: Arc::new(CallSlots::default()),
            db,
            config: Arc::new(config),
        }
    }
}
