//! sextant-alert: alert rules, the alert state machine, and notification delivery.
//!
//! **Architecture Invariant:** the state machine is a pure function of
//! (rules, query results, prior state, now); persistence goes through
//! `sextant-storage` and delivery through an HTTP client at the crate's edge.
