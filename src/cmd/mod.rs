//! One module per top-level command.

pub mod app;
pub mod bwrap;
pub mod conf;
pub mod daemon;
pub mod demo;
pub mod image;
pub mod key;
pub mod node;
pub mod pkg;
pub mod run;
pub mod vm;
