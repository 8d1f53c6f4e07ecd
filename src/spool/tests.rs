//! The log facade's tests: the spool's contract ([`contract_tests.rs`](contract_tests.rs),
//! which the redb spool passes too, see `redb/tests.rs`), then the facade's own
//! (`facade_tests.rs`), the equivalents of the redb spool's.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use crate::spool::*;

type Spool = LogSpool;

fn open(dir: &Path) -> Result<Spool, SpoolError> {
    LogSpool::open_with(dir, small())
}

include!("contract_tests.rs");

include!("facade_tests.rs");
