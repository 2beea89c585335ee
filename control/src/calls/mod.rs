//! Calls, from the control plane's side: who may call (admission), the one-time stream
//! tokens and call plans handed to the media plane, applying the events it sends back,
//! pricing usage, and the health of voice providers learnt from those events.

pub mod admission;
pub mod backlog;
pub mod health;
pub mod ingest;
pub mod link;
pub mod plan;
pub mod pricing;
