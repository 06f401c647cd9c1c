# The cork sidecar image. Base images cannot be pulled where cork is built,
# so it is FROM scratch around a static binary built beforehand:
#
#   make image        # = CGO_ENABLED=0 go build -tags nokube -o bin/cork-sidecar ./cmd/cork && docker build -t cork:dev .
#
# The nokube build leaves the kubernetes backend (client-go) out: the sidecar
# only runs `cork proxy` and the probes (docs/PERFORMANCE.md, "Memory").
# Trusted roots are compiled into the binary (golang.org/x/crypto/x509roots/fallback).
FROM scratch
COPY bin/cork-sidecar /cork
ENV CORK_LISTEN=0.0.0.0:3128
USER 65532:65532
EXPOSE 3128
ENTRYPOINT ["/cork", "proxy"]
