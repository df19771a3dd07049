//! Analysis of traces: plain functions from a [`chaintrace_model::Trace`] to
//! plain data that the API, the CLI and (later) the web UI render alike.
//!
//! Today: [`gantt::layout`], the one Gantt layout (rows in tree order, depth,
//! offsets on a common time axis, error marks). Critical path, self time and
//! parallelism what-if land here next. This crate depends only on the model
//! and does no I/O.

pub mod gantt;
