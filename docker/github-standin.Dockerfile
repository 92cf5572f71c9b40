# Test and development only: the GitHub stand-in from tests/, which serves git
# over smart HTTP through the real `git http-backend`, so it needs git and a
# shell. Its base, penguin-base:bookworm, is made locally from Debian's
# packages by docker/base/build-base.sh (nothing can be pulled here). It also
# holds the model stand-in, `llm-standin` (the compose dev profile's `model`
# service: an OpenAI-compatible API with scripted replies), which
# scripts/build-images stages in target/docker/.
FROM penguin-base:bookworm
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/penguin-dev/penguin-pod
LABEL org.opencontainers.image.title="penguin-github-standin" \
      org.opencontainers.image.description="Test-only GitHub stand-in (REST, App JWTs, tokens, git smart HTTP) and model stand-in" \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.created=$CREATED \
      org.opencontainers.image.source=$SOURCE
# Mount points owned by penguinuser, so fresh named volumes are too.
RUN mkdir -p /secrets /app-pub /git && chown 10001:10001 /secrets /app-pub /git
COPY target/x86_64-unknown-linux-gnu/release/github-standin /usr/local/bin/github-standin
COPY target/docker/llm-standin /usr/local/bin/llm-standin
COPY docker/standin-entrypoint.sh /usr/local/bin/standin-entrypoint
ENV STANDIN_ADDR=0.0.0.0:8090 \
    STANDIN_APP_ID=4242 \
    STANDIN_APP_PUBLIC_KEY_PATH=/app-pub/github-app.pub.pem \
    STANDIN_GIT_ROOT=/git \
    STANDIN_REPOS=octo-org/hello-world
USER 10001:10001
EXPOSE 8090
HEALTHCHECK --interval=3s --timeout=3s --retries=10 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8090"]
ENTRYPOINT ["/usr/local/bin/standin-entrypoint"]
CMD ["serve"]
