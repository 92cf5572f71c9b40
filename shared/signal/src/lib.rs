//! Process lifecycle shared by both services: the shutdown signal they drain
//! on (like linkerd's `linkerd-signal`), and the probe behind their
//! `healthcheck` subcommands (scratch images have no curl).

pub mod probe;

/// Resolves on SIGTERM (Kubernetes, `docker stop`) or Ctrl-C.
pub async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
