//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod apiserver;
pub mod broker;
pub mod mock_kube;
pub mod operator;
pub mod pki;
