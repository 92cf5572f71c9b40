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
