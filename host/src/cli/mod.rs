//! Command-line clients of a running hookwire (`hookwire plugin ...`).

pub mod plugin;
