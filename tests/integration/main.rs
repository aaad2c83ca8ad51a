//! Integration tests: the kube-aws binary and library against a real local AWS API (moto).

mod cli_errors;
mod export;
mod harness;
mod backends;
mod kms;
