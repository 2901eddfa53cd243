//! `brook operator`: turns `Stream` and `Consumer` resources into running brokers and keeps
//! them as declared.

pub mod resources;
