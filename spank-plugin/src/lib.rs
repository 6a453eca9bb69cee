//! `spank_berth.so`: the SPANK plugin that slurmd and slurmstepd load from
//! `plugstack.conf` so that `srun --container-image=...` runs tasks in berth
//! containers.
//!
//! Every `extern "C"` entry point goes through [`ffi::guard`], so no panic ever
//! unwinds into slurmstepd and every failure is reported through Slurm's own log.

pub mod args;
pub mod env;
pub mod facts;
pub mod ffi;
pub mod gpus;
pub mod launch;
pub mod log;
pub mod options;
mod plugin;
mod register;
pub mod spank;
pub mod user;
