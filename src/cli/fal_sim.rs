//! `aisha fal-sim`: the FAL simulator as a standalone server, for tests and offline runs
//! against a separate process.

use std::process::ExitCode;

use super::CliError;

/// How the standalone simulator behaves.
#[derive(Debug, clap::Args)]
pub struct FalSimArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub addr: std::net::SocketAddr,
    /// Seconds a training takes.
    #[arg(long, default_value_t = 20.0)]
    pub training_seconds: f64,
    /// Seconds a generation takes.
    #[arg(long, default_value_t = 5.0)]
    pub generation_seconds: f64,
    /// Fraction of jobs that fail (0–1).
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Fraction of webhooks delivered twice (0–1).
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_webhooks: f64,
    /// Fraction of webhooks never delivered (0–1).
    #[arg(long, default_value_t = 0.0)]
    pub drop_webhooks: f64,
    /// Fraction of HTTP calls answered 429 (0–1).
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit_rate: f64,
    /// Fraction of HTTP calls answered 500 (0–1).
    #[arg(long, default_value_t = 0.0)]
    pub server_error_rate: f64,
    /// Fraction of HTTP calls that stall for 30 s (0–1).
    #[arg(long, default_value_t = 0.0)]
    pub stall_rate: f64,
    /// Serve the deprecated `fal-ai/flux-pro-trainer` (refused as deprecated otherwise).
    #[arg(long)]
    pub pro_trainer: bool,
}

/// Serves the simulator until the process is stopped.
pub async fn run(args: FalSimArgs) -> Result<ExitCode, CliError> {
    use crate::fal::sim::{FaultRates, WebhookBehaviour};
    let FalSimArgs {
        addr,
        training_seconds,
        generation_seconds,
        failure_rate,
        duplicate_webhooks,
        drop_webhooks,
        rate_limit_rate,
        server_error_rate,
        stall_rate,
        pro_trainer,
    } = args;
    let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
    let sim = crate::fal::SimConfig::demo()
        .with_times(secs(1.0), secs(training_seconds), secs(generation_seconds))
        .with_failure_rate(failure_rate)
        .with_pro_trainer(pro_trainer)
        .with_webhook(WebhookBehaviour {
            duplicate_rate: duplicate_webhooks,
            drop_rate: drop_webhooks,
            ..WebhookBehaviour::default()
        })
        .with_faults(FaultRates {
            too_many_requests: rate_limit_rate,
            server_error: server_error_rate,
            stall: stall_rate,
            stall_for: secs(30.0),
        });
    crate::fal::sim::run_standalone(addr, sim)
        .await
        .map_err(|e| CliError::Io(format!("FAL simulator on {addr}: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
