//! End-to-end tests: one binary, one module per area, each test with its own database and ports.

mod actors;
mod api;
mod bad_input;
mod bot;
mod crash;
mod fake_telegram;
mod fal;
mod feed;
mod photos;
mod process;
mod projections;
mod send_limits;
mod steps;
mod store;
mod support;
