//! Call slots: how many calls a workspace, and a browser caller's address, have open on
//! this node, with the limits enforced race-free.
//!
//! A call takes its slot with [`CallSlots::try_reserve`], which checks the limits and
//! counts the call in one step under one lock, before the caller awaits anything, so
//! concurrent requests cannot all see room and all go ahead (review H1). The [`Slot`]
//! gives the place back when dropped: a refusal or an error after the reservation simply
//! drops it. An admitted call parks its slot here by call id ([`CallSlots::hold`]) until
//! its `ended` event ([`CallSlots::release`]); a phone call admitted by the voice webhook
//! but whose stream never arrives is given up when its stream token would have expired.
//!
//! Per node: the single-node deployment plans every call here. A scale-out control plane
//! would keep these counts in a shared store instead.

use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The limits one reservation is checked against; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// The workspace's plan: calls at once, phone and browser together.
    pub per_workspace: Option<u32>,
    /// Browser calls at once from one address (any workspace).
    pub per_address: Option<u32>,
}

/// Which limit refused a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    Workspace,
    Address,
}

#[derive(Default)]
struct Counts {
    by_workspace: HashMap<String, u32>,
    by_address: HashMap<String, u32>,
}

/// A slot parked under a call id; `expires_at_ms` for a phone call still waiting for its
/// stream.
struct Held {
    slot: Slot,
    expires_at_ms: Option<i64>,
}

/// The node's call slots (see the module docs).
#[derive(Default)]
pub struct CallSlots {
    counts: Mutex<Counts>,
    held: DashMap<String, Held>,
}

/// One call's place in the counts; dropping it gives the place back.
#[must_use = "the call holds its place only while this slot lives"]
pub struct Slot {
    slots: Arc<CallSlots>,
    workspace_id: String,
    address: Option<String>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("workspace_id", &self.workspace_id)
            .finish_non_exhaustive()
    }
}

impl CallSlots {
    /// Counts a call for `workspace_id` (and `address`, a browser caller's) unless that
    /// would pass a limit. Never awaits: the check and the count are one step.
    pub fn try_reserve(
        self: &Arc<Self>,
        workspace_id: &str,
        address: Option<&str>,
        limits: Limits,
        now_ms: i64,
    ) -> Result<Slot, Full> {
        self.prune_expired(now_ms);
        let mut counts = self.lock();
        let in_workspace = counts.by_workspace.get(workspace_id).copied().unwrap_or(0);
        if limits.per_workspace.is_some_and(|cap| in_workspace >= cap) {
            return Err(Full::Workspace);
        }
        if let Some(address) = address {
            let from_address = counts.by_address.get(address).copied().unwrap_or(0);
            if limits.per_address.is_some_and(|cap| from_address >= cap) {
                return Err(Full::Address);
            }
            *counts.by_address.entry(address.to_owned()).or_default() += 1;
        }
        *counts
            .by_workspace
            .entry(workspace_id.to_owned())
            .or_default() += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            workspace_id: workspace_id.to_owned(),
            address: address.map(str::to_owned),
        })
    }

    /// Parks `slot` under `call_id` until [`release`](Self::release) (or, with
    /// `expires_at_ms`, until then). A slot already parked there is given back.
    pub fn hold(&self, call_id: &str, slot: Slot, expires_at_ms: Option<i64>) {
        self.held.insert(
            call_id.to_owned(),
            Held {
                slot,
                expires_at_ms,
            },
        );
    }

    /// Makes the slot parked under `call_id` last until the call ends (its stream has
    /// arrived); a call with no slot here (admitted before a restart, or whose admission
    /// expired) is counted now, past the limits: it is already connected.
    pub fn keep(self: &Arc<Self>, call_id: &str, workspace_id: &str, now_ms: i64) {
        if let Some(mut held) = self.held.get_mut(call_id) {
            held.expires_at_ms = None;
            return;
        }
        if let Ok(slot) = self.try_reserve(workspace_id, None, Limits::default(), now_ms) {
            self.hold(call_id, slot, None);
        }
    }

    /// Takes the slot parked under `call_id` out, to move it or to drop it.
    pub fn take(&self, call_id: &str) -> Option<Slot> {
        self.held.remove(call_id).map(|(_, held)| held.slot)
    }

    /// Gives back the slot of a call that ended (a no-op if it has none).
    pub fn release(&self, call_id: &str) {
        drop(self.take(call_id));
    }

    /// Calls counted for `workspace_id` on this node.
    pub fn in_workspace(&self, workspace_id: &str) -> u32 {
        self.lock()
            .by_workspace
            .get(workspace_id)
            .copied()
            .unwrap_or(0)
    }

    /// Gives back the slots of phone calls whose stream never came.
    fn prune_expired(&self, now_ms: i64) {
        self.held
            .retain(|_, held| held.expires_at_ms.is_none_or(|at| at > now_ms));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts are plain integers updated in one step: a panic elsewhere while the
        // lock was held cannot leave them half-written, so a poisoned lock is still good.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        release_one(&mut counts.by_workspace, &self.workspace_id);
        if let Some(address) = &self.address {
            release_one(&mut counts.by_address, address);
        }
    }
}

/// Counts one fewer for `key`, forgetting keys at zero so the maps stay as small as the
/// number of calls open.
fn release_one(map: &mut HashMap<String, u32>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_workspace: u32, per_address: u32) -> Limits {
        Limits {
            per_workspace: Some(per_workspace),
            per_address: Some(per_address),
        }
    }

    #[test]
    fn the_address_limit_holds_and_a_dropped_slot_frees_its_place() {
        let slots = Arc::new(CallSlots::default());
        let l = limits(100, 3);
        let held: Vec<Slot> = (0..3)
            .map(|_| slots.try_reserve("ws", Some("1.1.1.1"), l, 0).unwrap())
            .collect();
        assert_eq!(
            slots.try_reserve("ws", Some("1.1.1.1"), l, 0).unwrap_err(),
            Full::Address
        );
        assert!(slots.try_reserve("ws", Some("2.2.2.2"), l, 0).is_ok());
        drop(held);
        assert_eq!(slots.in_workspace("ws"), 0);
        assert!(
            slots.lock().by_address.is_empty(),
            "no key outlives its calls"
        );
        assert!(slots.try_reserve("ws", Some("1.1.1.1"), l, 0).is_ok());
    }

    #[test]
    fn the_workspace_limit_counts_phone_and_browser_calls_per_workspace() {
        let slots = Arc::new(CallSlots::default());
        let l = limits(2, 100);
        let phone = slots.try_reserve("a", None, l, 0).unwrap();
        let web = slots.try_reserve("a", Some("1.1.1.1"), l, 0).unwrap();
        assert_eq!(
            slots.try_reserve("a", None, l, 0).unwrap_err(),
            Full::Workspace
        );
        // A refusal takes no place, for the workspace or the address.
        assert_eq!(
            slots.try_reserve("a", Some("9.9.9.9"), l, 0).unwrap_err(),
            Full::Workspace
        );
        assert!(slots.lock().by_address.get("9.9.9.9").is_none());
        assert!(
            slots.try_reserve("b", None, l, 0).is_ok(),
            "another workspace"
        );
        slots.hold("call_1", phone, None);
        drop(web);
        assert_eq!(slots.in_workspace("a"), 1);
        slots.release("call_1");
        assert_eq!(slots.in_workspace("a"), 0);
    }

    #[test]
    fn a_phone_admission_expires_unless_its_stream_arrives() {
        let slots = Arc::new(CallSlots::default());
        let l = limits(1, 100);
        let admitted = slots.try_reserve("a", None, l, 0).unwrap();
        slots.hold("call_1", admitted, Some(60_000));
        assert!(slots.try_reserve("a", None, l, 59_999).is_err());
        assert!(slots.try_reserve("a", None, l, 60_000).is_ok(), "expired");

        let admitted = slots.try_reserve("a", None, l, 0).unwrap();
        slots.hold("call_2", admitted, Some(60_000));
        slots.keep("call_2", "a", 10);
        assert!(
            slots.try_reserve("a", None, l, 120_000).is_err(),
            "a connected call keeps its slot"
        );
        // A stream redeemed with no admission here is counted anyway.
        slots.keep("call_3", "a", 10);
        assert_eq!(slots.in_workspace("a"), 2);
    }
}
