//! Integration tests: the kube-aws binary and library against a real local AWS API (moto).

mod backends;
mod cli_errors;
mod cluster;
mod contracts;
mod control_plane;
mod crash;
mod edges;
mod etcd_membership;
mod export;
mod fuzz;
mod harness;
mod history;
mod iam;
mod kms;
mod lab;
mod operations;
mod payload;
mod proxy;
mod release;
mod roles;
mod schemas;
mod served;
mod signing;
mod team;
mod validate;
mod workflow;
