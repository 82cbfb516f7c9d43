//! `postpone dashboard`: serves `postpone_web`'s router for this app until SIGINT/SIGTERM.
//!
//! The address and the token are checked before anything else (an address beyond loopback
//! without a token is refused in one line), then the address is bound (so a taken port
//! fails at once), then the schema is checked; the URL goes to stdout.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use postpone_web::{DashboardConfig, DashboardError};

use crate::Context;
use crate::flags::DashboardFlags;

pub(crate) async fn run(flags: DashboardFlags, context: Context) -> anyhow::Result<ExitCode> {
    let addr: SocketAddr = flags.bind.trim().parse().with_context(|| {
        format!(
            "--bind {:?} is not an address: give an IP and a port, like 127.0.0.1:8080",
            flags.bind
        )
    })?;
    let mut config = DashboardConfig::new().with_read_only(flags.read_only);
    if let Some(token) = flags.token {
        config = config.with_token(token);
    }
    postpone_web::check_bind(addr, &config)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DashboardError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    let (app, _) = context.app()?;
    app.check_schema().await?;
    println!("postpone dashboard: http://{local}/");
    postpone_web::serve_on(listener, &app, config, stop_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The first SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stop requested: the dashboard stops");
}
