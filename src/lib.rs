//! kube-aws: deploys secure, auditable and reproducible Kubernetes clusters on AWS.
//! The binary is a thin shell over this library; see ARCHITECTURE.md for the codemap.

#[cfg(test)]
mod architecture;
pub mod assets;
pub mod audit;
pub mod aws;
pub mod bounded;
pub mod cli;
pub mod config;
pub mod diff;
pub mod engine;
pub mod finding;
pub mod hash;
pub mod planfile;
pub mod releases;
pub mod render;
pub mod state;
pub mod validate;
