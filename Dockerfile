# The cork sidecar image. Base images cannot be pulled where cork is built,
# so it is FROM scratch around a static binary built beforehand:
#
#   make image        # = CGO_ENABLED=0 go build -o bin/cork ./cmd/cork && docker build -t cork:dev .
#
# Trusted roots are compiled into the binary (golang.org/x/crypto/x509roots/fallback).
FROM scratch
COPY bin/cork /cork
ENV CORK_LISTEN=0.0.0.0:3128
USER 65532:65532
EXPOSE 3128
ENTRYPOINT ["/cork", "proxy"]
