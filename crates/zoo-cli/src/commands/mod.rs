//! One module per command: its arguments and the `zoo-app` call that does its work.

pub mod card;
pub mod data;
pub mod demo;
pub mod evaluate;
pub mod export;
pub mod features;
pub mod fetch;
pub mod finetune;
pub mod inspect;
pub mod list;
pub mod lr_find;
pub mod materialize;
pub mod predict;
pub mod report;
pub mod show;
pub mod train;
mod training;
pub mod verify;
