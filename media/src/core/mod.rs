//! Sans-IO media core: every audio and call-control decision, testable without a socket
//! or a clock.
