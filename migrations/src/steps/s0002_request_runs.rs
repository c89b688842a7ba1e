//! 0002 request runs: the request index moves from one `requests` entry
//! per call to sorted runs in trees `request_runs` / `request_run_dir`.
//!
//! No data is rewritten: version-2 builds still read the version-1 tree
//! `requests` (after every run), and new seals write runs only. The step
//! exists so that a version-1 build refuses a store whose newer calls it
//! could not join to (it would not see the runs).

use crate::{KvStore, Step};

pub(crate) const REQUEST_RUNS: Step = Step {
    version: 2,
    name: "0002_request_runs",
    apply,
};

fn apply(_store: &mut dyn KvStore) -> Result<(), String> {
    Ok(())
}
