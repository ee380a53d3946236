#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

//! Integration tests of the HTTP API: the real router, a real PostgreSQL (a fresh database per
//! test), every answer checked against `openapi.yaml`. One binary, so it links once.

mod account_pages;
mod architecture;
mod auth;
mod bench_smoke;
mod budgets;
mod contacts;
mod contract;
mod devices;
mod events;
mod groups;
mod groups_more;
mod helpers;
mod idempotency;
mod input;
mod limits;
mod nodes;
mod ops;
mod outage;
mod processes;
mod receiver;
mod refusals;
mod sessions;
mod store_keys;
mod tenancy;
mod tenants;
mod users;
