//! sextant-tests: end-to-end tests against the real `sextant` binary, and
//! workspace structure checks.
