//! The `aisha` command line.
