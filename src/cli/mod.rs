//! Command implementations of `zos-perf` for talking to nodes over the
//! grid's relay: [`identity`], [`remote`] (`call --node/--twin`) and
//! [`fleet`], with their shared flags in [`rmb`].

pub mod fleet;
pub mod identity;
pub mod remote;
pub mod rmb;
