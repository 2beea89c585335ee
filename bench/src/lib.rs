//! Bench suite and fakes (issue 7). Empty until the call paths exist.
