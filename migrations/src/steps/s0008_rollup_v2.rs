//! 0008 rollup format 2: rollup values are written in rollup format
//! version 2 (Rice-coded digest weights and mean deltas, decimal bounds;
//! docs/format/rollup.md). Nothing is rewritten: version 1 values stay
//! readable, and a rollup rewritten by a late merge or a downsample is
//! written as version 2 (minute rollups only: `Rollup::encode` picks
//! version 2 for digest sizes ≤ 100). The version bump makes an older build refuse the
//! store: it would fail to read every version 2 rollup.

use crate::{KvStore, Step};

pub(crate) const ROLLUP_V2: Step = Step {
    version: 8,
    name: "0008_rollup_v2",
    apply,
};

fn apply(_store: &mut dyn KvStore) -> Result<(), String> {
    Ok(())
}
