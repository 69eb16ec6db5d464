//! `zoo-app`: what each `zoo` command does, as library calls that return serialisable reports.
//! The `zoo` binary only parses arguments and prints these reports.

pub mod cam;
pub mod cards;
pub mod data;
pub mod demo;
pub mod engines;
pub mod evaluate;
pub mod export;
pub mod features;
pub mod fetch;
pub mod finetune;
pub mod inspect;
pub mod labeled;
pub mod predict;
pub mod profile;
pub mod show;
pub mod standin;
pub mod verify;

/// The CPU backend (burn's `flex`: measured faster than ndarray on these machines).
pub type CpuBackend = burn::backend::Flex;
