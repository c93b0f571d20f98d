use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    aisha::cli::run().await
}
