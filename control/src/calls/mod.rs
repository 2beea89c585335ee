//! Calls, from the control plane's side: who may call (admission), the one-time stream
//! tokens and call plans handed to the media plane, applying the events it sends back,
//! pricing usage, the health of voice providers learnt from those events, and the slots
//! that cap how many calls run at once.

pub mod admission;
pub mod health;
pub mod ingest;
pub mod link;
pub mod plan;
pub mod pricing;
pub mod slots;
