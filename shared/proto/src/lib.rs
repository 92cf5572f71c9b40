//! Generated gRPC types for the Penguin pod's contracts (`proto/`).

/// `penguin.tokenator.v1`: the tokenator's `TokenService`.
pub mod tokenator {
    /// Version 1 of the token service.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("penguin.tokenator.v1");

        /// Encoded `FileDescriptorSet` of the tokenator protos, for gRPC server reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/tokenator_descriptor.bin"));
    }
}

/// `penguin.runner.v1`: penguin-runner's job service.
pub mod runner {
    /// Version 1 of the job service.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("penguin.runner.v1");

        /// Encoded `FileDescriptorSet` of the runner protos, for gRPC server reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/runner_descriptor.bin"));
    }
}

/// A gRPC channel to a service listening on the Unix socket at `path`
/// (the tokenator's same-pod listener).
pub async fn connect_unix(
    path: impl Into<std::path::PathBuf>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.into();
    // The URI is required by the API but unused: the connector dials the socket.
    tonic::transport::Endpoint::from_static("http://unix.socket")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}
