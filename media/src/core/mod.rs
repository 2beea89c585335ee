//! Sans-IO media core: every audio and call-control decision, testable without a socket
//! or a clock.

// DSP (codecs, resampling, pacing, recording).
pub mod echo;
pub mod g711;
pub mod opus;
pub mod pacer;
pub mod pcm;
pub mod recorder;
pub mod resample;

// The call: wire formats and the CallSession state machine.
pub mod session;
pub mod wire;
