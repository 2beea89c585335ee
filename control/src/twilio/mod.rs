//! Twilio, seen from the control plane: webhook signatures and TwiML.

pub mod signature;
pub mod twiml;
