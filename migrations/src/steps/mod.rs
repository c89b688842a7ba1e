//! The numbered steps. Each file is one version; never edit a released step.

mod s0001_initial;

pub(crate) use s0001_initial::INITIAL;
