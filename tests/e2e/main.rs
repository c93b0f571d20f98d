//! End-to-end tests: one binary, one module per area, each test with its own database and ports.

// First, so that its macros are in scope for the modules below.
#[macro_use]
mod support;

mod accounts;
mod actors;
mod api;
mod bad_input;
mod bot;
mod crash;
mod credits;
mod erasure;
mod fake_payments;
mod fake_telegram;
mod fal;
mod fal_forgets;
mod fal_sim_faithful;
mod fal_trust;
mod fal_upscale;
mod feed;
mod http_limits;
mod inbox;
mod instances;
mod liveness;
mod money;
mod paid_work;
mod payments;
mod photo_budgets;
mod photo_privacy;
mod photo_retention;
mod photos;
mod process;
mod projections;
mod read_models_forget;
mod refunds;
mod s3_store;
mod secrets;
mod send_limits;
mod shared_budgets;
mod steps;
mod store;
mod studio;
mod training_progress;
