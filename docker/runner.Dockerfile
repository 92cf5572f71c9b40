# penguin-runner: the only place repository code runs (a test command of
# `@Penguin fix tests`). A shipped image, but not `scratch`: the commands it
# runs need a shell and a toolchain. Its base, penguin-toolchain:bookworm
# (bash, git, python3, make, gcc, libc6-dev; user penguinrunner 10002:10001),
# is made locally from Debian's packages by docker/base/build-base.sh, since
# nothing can be pulled here. scripts/build-images stages the static binary in
# target/docker/ (the build context's allowlist, .dockerignore).
#
# Another toolchain: the binary is static, so copy it into your own image
# (name it as the `runner` service's `image` in a compose override file) and
# keep what the pod relies on: a non-root uid in group 10001 (the api's
# group reaches the socket, mode 0660), /work and /run/penguin-runner owned by
# it, the environment and the healthcheck:
#
#   FROM your-toolchain:tag
#   COPY --from=penguin-runner:<tag> /usr/local/bin/penguin-runner /usr/local/bin/
#   RUN mkdir -p /work /run/penguin-runner \
#    && chown 10002:10001 /work /run/penguin-runner \
#    && chmod 0700 /work && chmod 0750 /run/penguin-runner
#   ENV PENGUIN_RUNNER_SOCKET=/run/penguin-runner/runner.sock \
#       PENGUIN_RUNNER_WORK_DIR=/work PENGUIN_RUNNER_LOG_FORMAT=json
#   USER 10002:10001
#   HEALTHCHECK CMD ["/usr/local/bin/penguin-runner", "healthcheck"]
#   ENTRYPOINT ["/usr/local/bin/penguin-runner"]
FROM penguin-toolchain:bookworm
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/penguin-dev/penguin-pod
LABEL org.opencontainers.image.title="penguin-runner" \
      org.opencontainers.image.description="Runs repository commands for the Penguin pod in disposable job directories (Debian toolchain: bash, git, python3, make, gcc)" \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.created=$CREATED \
      org.opencontainers.image.source=$SOURCE \
      org.opencontainers.image.vendor="Penguin" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 0:0
# Mount points owned by penguinrunner: /work (a tmpfs under compose, the job
# directories) and /run/penguin-runner (the socket's volume, which a fresh
# named volume copies with this owner and mode: the api, group 10001, may
# reach the socket, nobody else may list it).
RUN mkdir -p /work /run/penguin-runner \
 && chown 10002:10001 /work /run/penguin-runner \
 && chmod 0700 /work \
 && chmod 0750 /run/penguin-runner
COPY target/docker/penguin-runner /usr/local/bin/penguin-runner
ENV PENGUIN_RUNNER_SOCKET=/run/penguin-runner/runner.sock \
    PENGUIN_RUNNER_WORK_DIR=/work \
    PENGUIN_RUNNER_LOG_FORMAT=json
USER 10002:10001
WORKDIR /work
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/penguin-runner", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/penguin-runner"]
