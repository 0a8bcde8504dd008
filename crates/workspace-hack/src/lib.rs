//! Empty on purpose: see Cargo.toml. Depending on this crate makes every
//! workspace member see the same dependency features, so `cargo test -p X`
//! reuses the one build of Burn instead of compiling another variant.
