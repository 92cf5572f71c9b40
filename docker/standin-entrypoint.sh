#!/usr/bin/env bash
# The stand-in image's entrypoint.
#   keygen: on first start, generate the dev App key: the private key into
#           /secrets (the tokenator's volume), the public key into /app-pub
#           (the stand-in's); later starts keep the existing key.
#   serve:  run the GitHub stand-in.
set -euo pipefail
case "${1:-serve}" in
  keygen)
    if [ -s /secrets/github-app.pem ] && [ -s /app-pub/github-app.pub.pem ]; then
      echo "keygen: the dev App key exists"
      exit 0
    fi
    umask 077
    tmp="$(mktemp /secrets/.github-app.pem.XXXXXX)"
    openssl genrsa -traditional -out "$tmp" 2048 2>/dev/null
    openssl rsa -in "$tmp" -pubout -out /app-pub/github-app.pub.pem 2>/dev/null
    chmod 0644 /app-pub/github-app.pub.pem
    mv "$tmp" /secrets/github-app.pem
    echo "keygen: generated a dev App key"
    ;;
  serve)
    exec /usr/local/bin/github-standin
    ;;
  *)
    exec "$@"
    ;;
esac
