//! `latchkey serve`, the default command (docs/contract.md "Command line").

use crate::config::Settings;

/// Runs the HTTP service until SIGTERM or SIGINT.
pub(super) async fn run(settings: Settings) -> anyhow::Result<()> {
    let app = crate::Application::build(settings).await?;
    app.run_until_signalled().await?;
    Ok(())
}
