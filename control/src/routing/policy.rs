//! Which providers a call tries, in which order, with which key: a pure function of the
//! workspace's strategy, the call's source, the configured providers and their health.
//! No I/O and no clock: health arrives as a snapshot taken by the caller.
//!
//! # Rules
//!
//! 1. **Candidates.** Every configured provider is considered once (by name; a repeated
//!    name is skipped as a duplicate). It is out when the platform or the workspace has
//!    disabled it, or when it needs a key and has none. The workspace's own key (BYO)
//!    wins over the platform's.
//! 2. **Strategy order** (ties always broken by priority, lower first, then name):
//!    - `auto`: by priority;
//!    - `cost_optimized`: by price per minute, cheapest first, unknown prices last;
//!    - `quality_first`: by recent p50 time to first audio, fastest first, providers
//!      without measurements last;
//!    - `specific`: the one provider, then (only with `fallback_enabled`) the others by
//!      priority;
//!    - `custom`: the list for the call's source (else `order`), then (only with
//!      `fallback_enabled`) the unlisted providers by priority. A source with no list and
//!      no `order` routes as `auto`.
//!
//!    `fallback_enabled` adds providers the strategy did not name; `auto`,
//!    `cost_optimized` and `quality_first` name them all, so it changes nothing there.
//! 3. **Health.** An open circuit is skipped, and so is a half-open one whose single probe
//!    is already out; a half-open one with its probe free stays at its place and is marked
//!    `probe` (the caller takes the slot, see `routing::route_call`). A provider the
//!    window calls `down` is skipped. Degraded providers go after the healthy ones —
//!    within the strategy's named providers and within the fallbacks separately, so a
//!    degraded provider the workspace chose still comes before a healthy fallback it did
//!    not choose.
//! 4. **Everything down.** When health leaves nothing to try, the providers health skipped
//!    are returned anyway, in strategy order, with `last_resort` set: a dead provider
//!    fails fast, and trying is better than refusing the call outright. Disabled and
//!    keyless providers are never tried.

use super::health::{CircuitView, HealthState, HealthView, ProviderKey};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use vocalized_shared::plan::{CallSource, ProviderKind};

/// The strategy names `workspace_provider_strategies.strategy` allows.
pub const STRATEGY_NAMES: [&str; 5] = [
    "auto",
    "cost_optimized",
    "quality_first",
    "specific",
    "custom",
];

/// Why a strategy document was refused; each message is fit for a 400 response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    #[error(
        "unknown strategy {0:?}: expected one of auto, cost_optimized, quality_first, specific, custom"
    )]
    UnknownStrategy(String),
    #[error("strategy \"specific\" needs a provider: set preferred_provider or config.provider")]
    SpecificWithoutProvider,
    #[error(
        "strategy \"custom\" needs a provider list: config.order or config.by_source.twilio/web"
    )]
    CustomWithoutList,
    #[error("provider names in a strategy must not be empty")]
    EmptyProviderName,
    #[error("strategy is not valid: {0}")]
    InvalidJson(String),
}

/// A strategy as a workspace stores and sends it (`PUT /workspaces/{id}/voice/strategy`).
/// Every field may be missing:
///
/// ```json
/// {
///   "strategy": "custom",            // default "auto"
///   "preferred_provider": "gemini",  // for "specific" (the column of that name)
///   "fallback_enabled": true,        // default true
///   "config": {                      // default {}
///     "provider": "gemini",          // "specific": same as preferred_provider, which wins
///     "order": ["openai", "gemini"], // "custom": the list for any source
///     "by_source": {                 // "custom": per call source, instead of "order"
///       "twilio": ["gemini", "openai"],   // also accepted as "phone"
///       "web": ["openai"]
///     }
///   }
/// }
/// ```
///
/// Unknown keys are ignored except inside `by_source`, where a typo would silently route
/// calls the wrong way. Provider names are the configured names (`openai`, `gemini`, ...),
/// trimmed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StrategyDocument {
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub preferred_provider: Option<String>,
    #[serde(default)]
    pub fallback_enabled: Option<bool>,
    #[serde(default)]
    pub config: Option<StrategyConfig>,
}

/// The `config` object of a [`StrategyDocument`] (`workspace_provider_strategies.config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StrategyConfig {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub order: Option<Vec<String>>,
    #[serde(default)]
    pub by_source: Option<SourceOrders>,
}

/// Per-source provider lists of a `custom` strategy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOrders {
    #[serde(default, alias = "phone")]
    pub twilio: Option<Vec<String>>,
    #[serde(default)]
    pub web: Option<Vec<String>>,
}

/// A parsed, valid strategy. A workspace without one gets [`Strategy::Auto`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    #[default]
    Auto,
    CostOptimized,
    QualityFirst,
    Specific {
        provider: String,
        fallback_enabled: bool,
    },
    Custom {
        /// For sources without their own list; may be empty when both have one.
        order: Vec<String>,
        twilio: Option<Vec<String>>,
        web: Option<Vec<String>>,
        fallback_enabled: bool,
    },
}

impl Strategy {
    /// Parses a whole [`StrategyDocument`] from JSON.
    pub fn from_json(json: &str) -> Result<Strategy, StrategyError> {
        let doc: StrategyDocument =
            serde_json::from_str(json).map_err(|e| StrategyError::InvalidJson(e.to_string()))?;
        Strategy::from_document(doc)
    }

    /// Parses a `workspace_provider_strategies` row: `config_json` is the `config` column
    /// (empty means `{}`).
    pub fn from_row(
        strategy: &str,
        preferred_provider: Option<&str>,
        config_json: &str,
        fallback_enabled: bool,
    ) -> Result<Strategy, StrategyError> {
        let config = if config_json.trim().is_empty() {
            None
        } else {
            serde_json::from_str(config_json)
                .map_err(|e| StrategyError::InvalidJson(format!("config: {e}")))?
        };
        Strategy::from_document(StrategyDocument {
            strategy: Some(strategy.to_owned()),
            preferred_provider: preferred_provider.map(str::to_owned),
            fallback_enabled: Some(fallback_enabled),
            config,
        })
    }

    pub fn from_document(doc: StrategyDocument) -> Result<Strategy, StrategyError> {
        let config = doc.config.unwrap_or_default();
        let fallback_enabled = doc.fallback_enabled.unwrap_or(true);
        let name = doc.strategy.as_deref().map(str::trim).unwrap_or("auto");
        match name {
            "auto" => Ok(Strategy::Auto),
            "cost_optimized" => Ok(Strategy::CostOptimized),
            "quality_first" => Ok(Strategy::QualityFirst),
            "specific" => {
                let provider = doc
                    .preferred_provider
                    .or(config.provider)
                    .ok_or(StrategyError::SpecificWithoutProvider)?;
                Ok(Strategy::Specific {
                    provider: clean_name(&provider)?,
                    fallback_enabled,
                })
            }
            "custom" => {
                let by_source = config.by_source.unwrap_or_default();
                let order = clean_list(config.order.unwrap_or_default())?;
                let twilio = by_source.twilio.map(clean_list).transpose()?;
                let web = by_source.web.map(clean_list).transpose()?;
                let listed = |l: &Option<Vec<String>>| l.as_ref().is_some_and(|l| !l.is_empty());
                if order.is_empty() && !listed(&twilio) && !listed(&web) {
                    return Err(StrategyError::CustomWithoutList);
                }
                Ok(Strategy::Custom {
                    order,
                    twilio,
                    web,
                    fallback_enabled,
                })
            }
            other => Err(StrategyError::UnknownStrategy(other.to_owned())),
        }
    }

    /// The stored name (`workspace_provider_strategies.strategy`).
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::CostOptimized => "cost_optimized",
            Strategy::QualityFirst => "quality_first",
            Strategy::Specific { .. } => "specific",
            Strategy::Custom { .. } => "custom",
        }
    }

    /// Every provider name the strategy mentions, once each, so the API can refuse names
    /// that are not configured.
    pub fn provider_names(&self) -> Vec<&str> {
        let mentioned: Vec<&str> = match self {
            Strategy::Specific { provider, .. } => vec![provider.as_str()],
            Strategy::Custom {
                order, twilio, web, ..
            } => order
                .iter()
                .chain(twilio.iter().flatten())
                .chain(web.iter().flatten())
                .map(String::as_str)
                .collect(),
            _ => Vec::new(),
        };
        let mut names: Vec<&str> = Vec::new();
        for n in mentioned {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }
}

fn clean_name(name: &str) -> Result<String, StrategyError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StrategyError::EmptyProviderName);
    }
    Ok(name.to_owned())
}

fn clean_list(list: Vec<String>) -> Result<Vec<String>, StrategyError> {
    list.iter().map(|n| clean_name(n)).collect()
}

/// One configured provider as seen by one workspace. The integrator fills it from
/// `platform_provider_configs` joined with the workspace's `workspace_provider_configs`
/// row (if any) and the model's price.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderCandidate {
    pub kind: ProviderKind,
    /// `platform_provider_configs.provider`; what strategies name.
    pub name: String,
    /// `platform_provider_configs.region`.
    pub region: String,
    /// Lower goes first: the workspace's priority where it has a row, else the platform's.
    pub priority: i64,
    /// `platform_provider_configs.is_enabled`.
    pub platform_enabled: bool,
    /// `workspace_provider_configs.is_enabled` (true when the workspace has no row).
    pub workspace_enabled: bool,
    /// Micro-dollars per call minute for the agent's model (`realtime_models`), else the
    /// platform's `cost_per_minute_micros`; `None` when unknown.
    pub price_per_minute_micros: Option<u64>,
    /// The workspace brings its own key: `uses_platform_key = 0` and a sealed key stored.
    pub workspace_key: bool,
    /// The platform has a key for it (admin-entered or from the environment).
    pub platform_key: bool,
    /// False for providers that need no key (the built-in echo).
    pub key_required: bool,
    /// The call asks this provider for a model the platform chose (its config or the
    /// default) or one in the active catalogue. When false (a tenant-chosen model or
    /// ElevenLabs agent id the catalogue does not list), the call's outcomes say more
    /// about the tenant's setting than about the provider, so they do not feed the
    /// platform's health (`calls::health`).
    pub platform_model: bool,
}

impl ProviderCandidate {
    /// An enabled provider named after its kind, in region `global`, priority 0, no price
    /// and no keys yet.
    pub fn new(kind: ProviderKind) -> Self {
        ProviderCandidate {
            kind,
            name: kind.as_str().to_owned(),
            region: "global".to_owned(),
            priority: 0,
            platform_enabled: true,
            workspace_enabled: true,
            price_per_minute_micros: None,
            workspace_key: false,
            platform_key: false,
            key_required: kind != ProviderKind::Echo,
            platform_model: true,
        }
    }

    pub fn key(&self) -> ProviderKey {
        ProviderKey::new(&self.name, &self.region)
    }

    fn key_source(&self) -> Option<KeySource> {
        if !self.key_required {
            Some(KeySource::NotNeeded)
        } else if self.workspace_key {
            Some(KeySource::Workspace)
        } else if self.platform_key {
            Some(KeySource::Platform)
        } else {
            None
        }
    }
}

/// Whose key the call uses for a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The workspace's own key (bring your own).
    Workspace,
    Platform,
    /// The provider takes no key.
    NotNeeded,
}

/// One provider in a call's chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Choice {
    pub kind: ProviderKind,
    pub name: String,
    pub region: String,
    pub key: KeySource,
    /// Its health when routed (`down` only in a last-resort chain).
    pub state: HealthState,
    /// This call is the half-open circuit's probe: its outcome closes or re-opens it.
    pub probe: bool,
}

impl Choice {
    pub fn provider_key(&self) -> ProviderKey {
        ProviderKey::new(&self.name, &self.region)
    }
}

/// Why a provider is not in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    PlatformDisabled,
    WorkspaceDisabled,
    NoKey,
    /// The strategy names a provider that is not configured.
    NotConfigured,
    CircuitOpen,
    /// Half-open, and another call is already probing it.
    ProbeInFlight,
    /// The window says down though the circuit has not opened yet.
    Down,
    /// The same provider name was configured twice; the first one counts.
    Duplicate,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::PlatformDisabled => "platform_disabled",
            SkipReason::WorkspaceDisabled => "workspace_disabled",
            SkipReason::NoKey => "no_key",
            SkipReason::NotConfigured => "not_configured",
            SkipReason::CircuitOpen => "circuit_open",
            SkipReason::ProbeInFlight => "probe_in_flight",
            SkipReason::Down => "down",
            SkipReason::Duplicate => "duplicate",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub name: String,
    /// `None` when the provider is not configured at all.
    pub region: Option<String>,
    pub reason: SkipReason,
}

/// The routing decision for one call. Providers the strategy leaves out on purpose
/// (`specific` or `custom` without fallback) appear in neither list.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Route {
    /// Try in this order; no provider twice. Empty when nothing can be tried.
    pub chain: Vec<Choice>,
    /// Skipped providers, for the call's events: candidate checks in input order, then
    /// health skips in strategy order.
    pub skipped: Vec<Skipped>,
    /// Health left nothing, so `chain` holds the providers it skipped (rule 4).
    pub last_resort: bool,
}

/// Orders the providers for one call; see the module docs for the rules. `health` is a
/// snapshot (`HealthBook::snapshot`); a provider missing from it counts as healthy.
pub fn route(
    strategy: &Strategy,
    source: CallSource,
    candidates: &[ProviderCandidate],
    health: &HashMap<ProviderKey, HealthView>,
) -> Route {
    let mut skipped = Vec::new();
    let mut names = HashSet::new();
    let mut usable: Vec<Usable<'_>> = Vec::new();
    for c in candidates {
        let reason = if !names.insert(c.name.as_str()) {
            Some(SkipReason::Duplicate)
        } else if !c.platform_enabled {
            Some(SkipReason::PlatformDisabled)
        } else if !c.workspace_enabled {
            Some(SkipReason::WorkspaceDisabled)
        } else {
            match c.key_source() {
                None => Some(SkipReason::NoKey),
                Some(key) => {
                    usable.push(Usable {
                        c,
                        key,
                        health: health.get(&c.key()).copied().unwrap_or_default(),
                    });
                    None
                }
            }
        };
        if let Some(reason) = reason {
            skipped.push(skip(c, reason));
        }
    }

    let by_priority = |a: &Usable<'_>, b: &Usable<'_>| {
        (a.c.priority, &a.c.name, &a.c.region).cmp(&(b.c.priority, &b.c.name, &b.c.region))
    };
    let (named, fallback): (Vec<Usable<'_>>, Vec<Usable<'_>>) = match strategy {
        Strategy::Auto => (sorted(usable, by_priority), Vec::new()),
        Strategy::CostOptimized => {
            let by_price = |a: &Usable<'_>, b: &Usable<'_>| {
                unknown_last(a.c.price_per_minute_micros, b.c.price_per_minute_micros)
                    .then_with(|| by_priority(a, b))
            };
            (sorted(usable, by_price), Vec::new())
        }
        Strategy::QualityFirst => {
            let by_ttfa = |a: &Usable<'_>, b: &Usable<'_>| {
                unknown_last(a.health.ttfa_p50_ms, b.health.ttfa_p50_ms)
                    .then_with(|| by_priority(a, b))
            };
            (sorted(usable, by_ttfa), Vec::new())
        }
        Strategy::Specific {
            provider,
            fallback_enabled,
        } => {
            let list = std::slice::from_ref(provider);
            split_listed(
                list,
                *fallback_enabled,
                usable,
                &names,
                &mut skipped,
                by_priority,
            )
        }
        Strategy::Custom {
            order,
            twilio,
            web,
            fallback_enabled,
        } => {
            let for_source = match source {
                CallSource::Twilio => twilio.as_deref(),
                CallSource::Web => web.as_deref(),
            };
            let list = for_source.filter(|l| !l.is_empty()).unwrap_or(order);
            if list.is_empty() {
                (sorted(usable, by_priority), Vec::new())
            } else {
                split_listed(
                    list,
                    *fallback_enabled,
                    usable,
                    &names,
                    &mut skipped,
                    by_priority,
                )
            }
        }
    };

    let mut chain = Vec::new();
    let mut held = Vec::new();
    for group in [named, fallback] {
        let mut healthy = Vec::new();
        let mut degraded = Vec::new();
        for u in group {
            match u.health.circuit {
                CircuitView::Open { .. } => held.push((u, SkipReason::CircuitOpen)),
                CircuitView::HalfOpen { probe_in_flight } if probe_in_flight => {
                    held.push((u, SkipReason::ProbeInFlight))
                }
                CircuitView::HalfOpen { .. } => healthy.push(u.choice(true)),
                CircuitView::Closed => match u.health.state {
                    HealthState::Down => held.push((u, SkipReason::Down)),
                    HealthState::Degraded => degraded.push(u.choice(false)),
                    HealthState::Healthy => healthy.push(u.choice(false)),
                },
            }
        }
        chain.extend(healthy);
        chain.extend(degraded);
    }

    let last_resort = chain.is_empty() && !held.is_empty();
    if last_resort {
        chain = held.into_iter().map(|(u, _)| u.choice(false)).collect();
    } else {
        skipped.extend(held.into_iter().map(|(u, reason)| skip(u.c, reason)));
    }
    Route {
        chain,
        skipped,
        last_resort,
    }
}

#[derive(Clone, Copy)]
struct Usable<'a> {
    c: &'a ProviderCandidate,
    key: KeySource,
    health: HealthView,
}

impl Usable<'_> {
    fn choice(&self, probe: bool) -> Choice {
        Choice {
            kind: self.c.kind,
            name: self.c.name.clone(),
            region: self.c.region.clone(),
            key: self.key,
            state: self.health.state,
            probe,
        }
    }
}

fn skip(c: &ProviderCandidate, reason: SkipReason) -> Skipped {
    Skipped {
        name: c.name.clone(),
        region: Some(c.region.clone()),
        reason,
    }
}

fn sorted<'a>(
    mut v: Vec<Usable<'a>>,
    cmp: impl Fn(&Usable<'a>, &Usable<'a>) -> Ordering,
) -> Vec<Usable<'a>> {
    v.sort_by(|a, b| cmp(a, b));
    v
}

/// Known values ascending, unknown ones after them.
fn unknown_last<T: Ord>(a: Option<T>, b: Option<T>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The listed providers in list order (each once), and the rest by priority when
/// `fallback_enabled`. A listed name with no candidate at all is recorded as skipped;
/// one that exists but is unusable was recorded already.
fn split_listed<'a>(
    list: &[String],
    fallback_enabled: bool,
    usable: Vec<Usable<'a>>,
    configured: &HashSet<&str>,
    skipped: &mut Vec<Skipped>,
    by_priority: impl Fn(&Usable<'a>, &Usable<'a>) -> Ordering,
) -> (Vec<Usable<'a>>, Vec<Usable<'a>>) {
    let mut named = Vec::new();
    let mut seen = HashSet::new();
    for name in list {
        if !seen.insert(name.as_str()) {
            continue;
        }
        if let Some(u) = usable.iter().find(|u| &u.c.name == name) {
            named.push(*u);
        } else if !configured.contains(name.as_str()) {
            skipped.push(Skipped {
                name: name.clone(),
                region: None,
                reason: SkipReason::NotConfigured,
            });
        }
    }
    let rest = if fallback_enabled {
        let rest = usable
            .into_iter()
            .filter(|u| !seen.contains(u.c.name.as_str()))
            .collect();
        sorted(rest, by_priority)
    } else {
        Vec::new()
    };
    (named, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProviderKind::{Deepgram, Echo, Elevenlabs, Gemini, Openai};

    fn cand(kind: ProviderKind, priority: i64) -> ProviderCandidate {
        ProviderCandidate {
            priority,
            platform_key: true,
            ..ProviderCandidate::new(kind)
        }
    }

    fn names(route: &Route) -> Vec<&str> {
        route.chain.iter().map(|c| c.name.as_str()).collect()
    }

    fn skips(route: &Route) -> Vec<(&str, SkipReason)> {
        route
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.reason))
            .collect()
    }

    fn all_healthy() -> HashMap<ProviderKey, HealthView> {
        HashMap::new()
    }

    fn health(entries: &[(&ProviderCandidate, HealthView)]) -> HashMap<ProviderKey, HealthView> {
        entries.iter().map(|(c, v)| (c.key(), *v)).collect()
    }

    fn state(state: HealthState) -> HealthView {
        HealthView {
            state,
            ..HealthView::default()
        }
    }

    fn circuit(circuit: CircuitView) -> HealthView {
        HealthView {
            state: HealthState::Down,
            circuit,
            ..HealthView::default()
        }
    }

    fn open() -> HealthView {
        circuit(CircuitView::Open { until_ms: 99 })
    }

    fn ttfa(ms: u32) -> HealthView {
        HealthView {
            ttfa_p50_ms: Some(ms),
            ..HealthView::default()
        }
    }

    fn specific(provider: &str, fallback_enabled: bool) -> Strategy {
        Strategy::Specific {
            provider: provider.into(),
            fallback_enabled,
        }
    }

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    // === parsing ===

    #[test]
    fn a_missing_or_empty_document_means_auto() {
        assert_eq!(Strategy::from_json("{}"), Ok(Strategy::Auto));
        assert_eq!(
            Strategy::from_json(r#"{"strategy": null, "config": null}"#),
            Ok(Strategy::Auto)
        );
        assert_eq!(Strategy::default(), Strategy::Auto);
    }

    #[test]
    fn every_stored_name_parses_back_to_itself() {
        let docs = [
            r#"{"strategy": "auto"}"#,
            r#"{"strategy": "cost_optimized"}"#,
            r#"{"strategy": "quality_first"}"#,
            r#"{"strategy": "specific", "preferred_provider": "gemini"}"#,
            r#"{"strategy": "custom", "config": {"order": ["openai"]}}"#,
        ];
        for (doc, name) in docs.iter().zip(STRATEGY_NAMES) {
            assert_eq!(Strategy::from_json(doc).unwrap().name(), name);
        }
    }

    #[test]
    fn an_unknown_strategy_is_a_clear_error() {
        let err = Strategy::from_json(r#"{"strategy": "cheapest"}"#).unwrap_err();
        assert_eq!(err, StrategyError::UnknownStrategy("cheapest".into()));
        let message = err.to_string();
        assert!(
            message.contains("\"cheapest\"") && message.contains("cost_optimized"),
            "{message}"
        );
        assert!(matches!(
            Strategy::from_json(r#"{"strategy": ""}"#),
            Err(StrategyError::UnknownStrategy(_))
        ));
    }

    #[test]
    fn specific_takes_its_provider_from_the_column_first() {
        assert_eq!(
            Strategy::from_json(r#"{"strategy": "specific"}"#),
            Err(StrategyError::SpecificWithoutProvider)
        );
        assert_eq!(
            Strategy::from_json(r#"{"strategy": "specific", "config": {"provider": " gemini "}}"#),
            Ok(specific("gemini", true)),
            "fallback defaults to on; names are trimmed"
        );
        assert_eq!(
            Strategy::from_json(
                r#"{"strategy": "specific", "preferred_provider": "openai",
                    "fallback_enabled": false, "config": {"provider": "gemini"}}"#
            ),
            Ok(specific("openai", false))
        );
        assert_eq!(
            Strategy::from_json(r#"{"strategy": "specific", "preferred_provider": "  "}"#),
            Err(StrategyError::EmptyProviderName)
        );
    }

    #[test]
    fn custom_needs_a_list_and_accepts_phone_for_twilio() {
        assert_eq!(
            Strategy::from_json(r#"{"strategy": "custom"}"#),
            Err(StrategyError::CustomWithoutList)
        );
        assert_eq!(
            Strategy::from_json(
                r#"{"strategy": "custom", "config": {"order": [], "by_source": {"web": []}}}"#
            ),
            Err(StrategyError::CustomWithoutList)
        );
        assert_eq!(
            Strategy::from_json(
                r#"{"strategy": "custom", "config": {"by_source": {"phone": ["gemini", "openai"]}}}"#
            ),
            Ok(Strategy::Custom {
                order: vec![],
                twilio: Some(list(&["gemini", "openai"])),
                web: None,
                fallback_enabled: true,
            })
        );
        assert!(matches!(
            Strategy::from_json(
                r#"{"strategy": "custom", "config": {"by_source": {"sms": ["openai"]}}}"#
            ),
            Err(StrategyError::InvalidJson(_))
        ));
        assert_eq!(
            Strategy::from_json(r#"{"strategy": "custom", "config": {"order": ["openai", ""]}}"#),
            Err(StrategyError::EmptyProviderName)
        );
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for bad in [
            "",
            "[",
            r#"{"strategy": 3}"#,
            r#"{"config": {"order": "openai"}}"#,
        ] {
            assert!(
                matches!(Strategy::from_json(bad), Err(StrategyError::InvalidJson(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn rows_parse_with_their_columns() {
        assert_eq!(
            Strategy::from_row("specific", Some("gemini"), "{}", false),
            Ok(specific("gemini", false))
        );
        assert_eq!(
            Strategy::from_row("custom", None, r#"{"order": ["deepgram"]}"#, true),
            Ok(Strategy::Custom {
                order: list(&["deepgram"]),
                twilio: None,
                web: None,
                fallback_enabled: true,
            })
        );
        assert_eq!(
            Strategy::from_row("auto", None, "", true),
            Ok(Strategy::Auto)
        );
        assert!(matches!(
            Strategy::from_row("auto", None, "{not json", true),
            Err(StrategyError::InvalidJson(m)) if m.starts_with("config:")
        ));
        assert_eq!(
            Strategy::from_row("fastest", None, "{}", true),
            Err(StrategyError::UnknownStrategy("fastest".into()))
        );
    }

    #[test]
    fn provider_names_lists_each_mentioned_name_once() {
        let s = Strategy::Custom {
            order: list(&["openai", "gemini"]),
            twilio: Some(list(&["gemini", "deepgram"])),
            web: None,
            fallback_enabled: true,
        };
        assert_eq!(s.provider_names(), ["openai", "gemini", "deepgram"]);
        assert_eq!(specific("gemini", true).provider_names(), ["gemini"]);
        assert!(Strategy::Auto.provider_names().is_empty());
    }

    // === strategies ===

    #[test]
    fn auto_orders_by_priority_then_name() {
        let c = [cand(Openai, 2), cand(Gemini, 1), cand(Deepgram, 1)];
        let r = route(&Strategy::Auto, CallSource::Twilio, &c, &all_healthy());
        assert_eq!(names(&r), ["deepgram", "gemini", "openai"]);
        assert!(r.skipped.is_empty());
        assert!(!r.last_resort);
        assert!(
            r.chain
                .iter()
                .all(|c| c.state == HealthState::Healthy && !c.probe)
        );
    }

    #[test]
    fn cost_optimized_puts_the_cheapest_first_and_unknown_prices_last() {
        let priced = |kind, priority, price| ProviderCandidate {
            price_per_minute_micros: price,
            ..cand(kind, priority)
        };
        let c = [
            priced(Openai, 0, Some(300_000)),
            priced(Elevenlabs, 0, None),
            priced(Deepgram, 5, Some(100_000)),
            priced(Gemini, 1, Some(100_000)),
        ];
        let r = route(
            &Strategy::CostOptimized,
            CallSource::Web,
            &c,
            &all_healthy(),
        );
        assert_eq!(names(&r), ["gemini", "deepgram", "openai", "elevenlabs"]);
    }

    #[test]
    fn quality_first_puts_the_fastest_first_audio_first() {
        let c = [
            cand(Openai, 0),
            cand(Gemini, 1),
            cand(Deepgram, 2),
            cand(Elevenlabs, 3),
        ];
        let h = health(&[(&c[0], ttfa(800)), (&c[1], ttfa(400)), (&c[3], ttfa(600))]);
        let r = route(&Strategy::QualityFirst, CallSource::Web, &c, &h);
        assert_eq!(names(&r), ["gemini", "elevenlabs", "openai", "deepgram"]);
    }

    #[test]
    fn specific_falls_back_by_priority_only_when_enabled() {
        let c = [cand(Openai, 0), cand(Gemini, 2), cand(Deepgram, 1)];
        let with = route(
            &specific("gemini", true),
            CallSource::Twilio,
            &c,
            &all_healthy(),
        );
        assert_eq!(names(&with), ["gemini", "openai", "deepgram"]);
        let without = route(
            &specific("gemini", false),
            CallSource::Twilio,
            &c,
            &all_healthy(),
        );
        assert_eq!(names(&without), ["gemini"]);
        assert!(
            without.skipped.is_empty(),
            "unchosen providers are not skips"
        );
    }

    #[test]
    fn specific_naming_an_unconfigured_provider_says_so() {
        let c = [cand(Openai, 0), cand(Gemini, 1)];
        let with = route(
            &specific("elevenlabs", true),
            CallSource::Web,
            &c,
            &all_healthy(),
        );
        assert_eq!(names(&with), ["openai", "gemini"]);
        assert_eq!(
            with.skipped,
            [Skipped {
                name: "elevenlabs".into(),
                region: None,
                reason: SkipReason::NotConfigured
            }]
        );
        let without = route(
            &specific("elevenlabs", false),
            CallSource::Web,
            &c,
            &all_healthy(),
        );
        assert!(without.chain.is_empty());
        assert!(!without.last_resort);
    }

    #[test]
    fn specific_naming_a_disabled_provider_reports_it_once() {
        let c = [
            ProviderCandidate {
                workspace_enabled: false,
                ..cand(Gemini, 0)
            },
            cand(Openai, 1),
        ];
        let r = route(
            &specific("gemini", true),
            CallSource::Web,
            &c,
            &all_healthy(),
        );
        assert_eq!(names(&r), ["openai"]);
        assert_eq!(skips(&r), [("gemini", SkipReason::WorkspaceDisabled)]);
    }

    fn per_source(fallback_enabled: bool) -> Strategy {
        Strategy::Custom {
            order: list(&["openai"]),
            twilio: Some(list(&["gemini", "deepgram", "gemini"])),
            web: Some(list(&["elevenlabs"])),
            fallback_enabled,
        }
    }

    #[test]
    fn custom_uses_the_list_for_the_call_source() {
        let c = [
            cand(Openai, 0),
            cand(Gemini, 1),
            cand(Deepgram, 2),
            cand(Elevenlabs, 3),
        ];
        let phone = route(&per_source(false), CallSource::Twilio, &c, &all_healthy());
        assert_eq!(
            names(&phone),
            ["gemini", "deepgram"],
            "in list order, each once"
        );
        let web = route(&per_source(false), CallSource::Web, &c, &all_healthy());
        assert_eq!(names(&web), ["elevenlabs"]);
        let web = route(&per_source(true), CallSource::Web, &c, &all_healthy());
        assert_eq!(names(&web), ["elevenlabs", "openai", "gemini", "deepgram"]);
    }

    #[test]
    fn custom_without_a_list_for_the_source_uses_order_then_auto() {
        let c = [cand(Openai, 0), cand(Gemini, 1), cand(Deepgram, 2)];
        let with_order = Strategy::Custom {
            order: list(&["deepgram", "openai"]),
            twilio: Some(list(&["gemini"])),
            web: None,
            fallback_enabled: false,
        };
        let r = route(&with_order, CallSource::Web, &c, &all_healthy());
        assert_eq!(names(&r), ["deepgram", "openai"]);

        let phone_only = Strategy::Custom {
            order: vec![],
            twilio: Some(list(&["gemini"])),
            web: None,
            fallback_enabled: false,
        };
        let r = route(&phone_only, CallSource::Web, &c, &all_healthy());
        assert_eq!(names(&r), ["openai", "gemini", "deepgram"]);
    }

    #[test]
    fn custom_reports_listed_names_that_are_not_configured() {
        let c = [cand(Openai, 0)];
        let s = Strategy::Custom {
            order: list(&["vapi", "openai"]),
            twilio: None,
            web: None,
            fallback_enabled: false,
        };
        let r = route(&s, CallSource::Twilio, &c, &all_healthy());
        assert_eq!(names(&r), ["openai"]);
        assert_eq!(skips(&r), [("vapi", SkipReason::NotConfigured)]);
    }

    // === candidates and keys ===

    #[test]
    fn the_workspace_key_wins_over_the_platform_key() {
        let byo = ProviderCandidate {
            workspace_key: true,
            ..cand(Openai, 0)
        };
        let byo_only = ProviderCandidate {
            workspace_key: true,
            platform_key: false,
            ..cand(Gemini, 1)
        };
        let c = [
            byo,
            byo_only,
            cand(Deepgram, 2),
            ProviderCandidate::new(Echo),
        ];
        let r = route(&Strategy::Auto, CallSource::Web, &c, &all_healthy());
        let keys: Vec<(&str, KeySource)> =
            r.chain.iter().map(|c| (c.name.as_str(), c.key)).collect();
        assert_eq!(
            keys,
            [
                ("echo", KeySource::NotNeeded),
                ("openai", KeySource::Workspace),
                ("gemini", KeySource::Workspace),
                ("deepgram", KeySource::Platform),
            ]
        );
    }

    #[test]
    fn a_provider_without_any_key_is_not_a_candidate() {
        let c = [ProviderCandidate::new(Openai), cand(Gemini, 1)];
        for strategy in [Strategy::Auto, specific("openai", false)] {
            let r = route(&strategy, CallSource::Twilio, &c, &all_healthy());
            assert!(!names(&r).contains(&"openai"), "{strategy:?}");
            assert_eq!(skips(&r), [("openai", SkipReason::NoKey)]);
            assert!(!r.last_resort, "a keyless provider is never a last resort");
        }
    }

    #[test]
    fn disabled_and_duplicate_providers_are_skipped_with_their_reason() {
        let c = [
            ProviderCandidate {
                platform_enabled: false,
                ..cand(Openai, 0)
            },
            ProviderCandidate {
                workspace_enabled: false,
                ..cand(Gemini, 0)
            },
            cand(Deepgram, 0),
            ProviderCandidate {
                region: "eu".into(),
                ..cand(Deepgram, 0)
            },
        ];
        let r = route(&Strategy::Auto, CallSource::Web, &c, &all_healthy());
        assert_eq!(names(&r), ["deepgram"]);
        assert_eq!(
            r.chain[0].region, "global",
            "the first configuration counts"
        );
        assert_eq!(
            skips(&r),
            [
                ("openai", SkipReason::PlatformDisabled),
                ("gemini", SkipReason::WorkspaceDisabled),
                ("deepgram", SkipReason::Duplicate),
            ]
        );
    }

    // === health ===

    #[test]
    fn degraded_providers_go_after_healthy_ones() {
        let c = [cand(Openai, 0), cand(Gemini, 1), cand(Deepgram, 2)];
        let h = health(&[(&c[0], state(HealthState::Degraded))]);
        let r = route(&Strategy::Auto, CallSource::Web, &c, &h);
        assert_eq!(names(&r), ["gemini", "deepgram", "openai"]);
        assert_eq!(r.chain[2].state, HealthState::Degraded);
    }

    #[test]
    fn a_chosen_degraded_provider_still_comes_before_unchosen_fallbacks() {
        let c = [
            cand(Openai, 0),
            cand(Gemini, 1),
            cand(Deepgram, 2),
            cand(Elevenlabs, 3),
        ];
        let s = Strategy::Custom {
            order: list(&["openai", "gemini"]),
            twilio: None,
            web: None,
            fallback_enabled: true,
        };
        let h = health(&[
            (&c[0], state(HealthState::Degraded)),
            (&c[2], state(HealthState::Degraded)),
        ]);
        let r = route(&s, CallSource::Twilio, &c, &h);
        assert_eq!(names(&r), ["gemini", "openai", "elevenlabs", "deepgram"]);
    }

    #[test]
    fn open_circuits_probes_in_flight_and_down_providers_are_skipped() {
        let c = [
            cand(Openai, 0),
            cand(Gemini, 1),
            cand(Deepgram, 2),
            cand(Elevenlabs, 3),
        ];
        let h = health(&[
            (&c[0], open()),
            (
                &c[1],
                circuit(CircuitView::HalfOpen {
                    probe_in_flight: true,
                }),
            ),
            (&c[2], state(HealthState::Down)),
        ]);
        let r = route(&Strategy::Auto, CallSource::Web, &c, &h);
        assert_eq!(names(&r), ["elevenlabs"]);
        assert_eq!(
            skips(&r),
            [
                ("openai", SkipReason::CircuitOpen),
                ("gemini", SkipReason::ProbeInFlight),
                ("deepgram", SkipReason::Down),
            ]
        );
    }

    #[test]
    fn a_free_half_open_provider_keeps_its_place_as_the_probe() {
        let c = [cand(Openai, 0), cand(Gemini, 1)];
        let h = health(&[(
            &c[0],
            circuit(CircuitView::HalfOpen {
                probe_in_flight: false,
            }),
        )]);
        let r = route(&Strategy::Auto, CallSource::Web, &c, &h);
        assert_eq!(names(&r), ["openai", "gemini"]);
        assert!(r.chain[0].probe);
        assert!(!r.chain[1].probe);
    }

    #[test]
    fn when_everything_is_down_the_chain_is_a_last_resort_in_policy_order() {
        let c = [
            cand(Openai, 1),
            cand(Gemini, 0),
            ProviderCandidate::new(Deepgram),
        ];
        let h = health(&[
            (&c[0], open()),
            (
                &c[1],
                circuit(CircuitView::HalfOpen {
                    probe_in_flight: true,
                }),
            ),
        ]);
        let r = route(&Strategy::Auto, CallSource::Twilio, &c, &h);
        assert!(r.last_resort);
        assert_eq!(names(&r), ["gemini", "openai"]);
        assert!(
            r.chain
                .iter()
                .all(|c| c.state == HealthState::Down && !c.probe)
        );
        assert_eq!(
            skips(&r),
            [("deepgram", SkipReason::NoKey)],
            "the tried ones are not skips"
        );
    }

    #[test]
    fn a_last_resort_respects_specific_without_fallback() {
        let c = [cand(Openai, 0), cand(Gemini, 1)];
        let h = health(&[(&c[0], open()), (&c[1], open())]);
        let r = route(&specific("gemini", false), CallSource::Web, &c, &h);
        assert!(r.last_resort);
        assert_eq!(names(&r), ["gemini"]);
    }

    #[test]
    fn one_live_provider_means_no_last_resort() {
        let c = [cand(Openai, 0), cand(Gemini, 1)];
        let h = health(&[(&c[0], open()), (&c[1], state(HealthState::Degraded))]);
        let r = route(&Strategy::Auto, CallSource::Web, &c, &h);
        assert!(!r.last_resort);
        assert_eq!(names(&r), ["gemini"]);
        assert_eq!(skips(&r), [("openai", SkipReason::CircuitOpen)]);
    }

    #[test]
    fn health_is_looked_up_by_provider_and_region() {
        let eu = ProviderCandidate {
            region: "eu".into(),
            ..cand(Openai, 0)
        };
        let c = [eu, cand(Gemini, 1)];
        let h = HashMap::from([(ProviderKey::new("openai", "global"), open())]);
        let r = route(&Strategy::Auto, CallSource::Web, &c, &h);
        assert_eq!(
            names(&r),
            ["openai", "gemini"],
            "the open circuit is another region's"
        );
    }
}
