//! The accept loop. Connection tasks live in a `JoinSet` owned by the loop, so aborting the
//! loop's task (when the handle is dropped) closes every connection, including ones stuck in a
//! `Hang` or in the middle of a stream.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

pub(crate) async fn serve(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _peer)) => {
                    let router = router.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            router.clone().oneshot(request)
                        });
                        // A connection error (for example a client that went away, or a
                        // scripted disconnect) only ends that connection.
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(socket), service)
                            .await;
                    });
                }
                // Out of file descriptors and the like: back off briefly and go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
