//! sextant-alert: alert rules, the alert state machine, and notification delivery.
//!
//! **Architecture Invariant:** the state machine is a pure function of
//! (rules, query results, prior state, now); persistence goes through
//! `sextant-storage` and delivery through an HTTP client at the crate's edge.
//!
//! OWNER: alert helper. This file defines the contract the server codes
//! against; the implementation fills in the bodies (and may add to it).

mod api;

pub use api::{
    AlertConfig, AlertError, AlertStats, Alerting, HistoryEntry, HistoryQuery, InstanceView,
    NotifierConfig, NotifierKind, Rule, Silence,
};
