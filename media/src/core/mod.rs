//! Sans-IO media core: every audio and call-control decision, testable without a socket
//! or a clock.

// DSP (codecs, resampling, pacing, recording).
pub mod g711;
pub mod opus;
pub mod pcm;
pub mod resample;
