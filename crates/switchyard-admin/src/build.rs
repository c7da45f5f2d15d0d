//! What this binary is: its version and the commit it was built from.

/// The workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from (12 hex digits), from `SWITCHYARD_GIT_COMMIT` at build
/// time or `git rev-parse`; `unknown` when neither was available (a build from a tarball).
pub const COMMIT: &str = env!("SWITCHYARD_BUILD_COMMIT");
