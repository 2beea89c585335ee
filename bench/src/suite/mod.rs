//! The load-test runner behind `vocalized-bench` (issue 7): scenarios that drive a real
//! gateway with simulated callers and fake providers, and the report they produce.
