# Convenience targets. The README's commands work without make.
IMAGE ?= cork:dev
GO ?= go

.PHONY: build sidecar test image bench clean guest

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/cork ./cmd/cork

# The sidecar image's cork: without the kubernetes backend (client-go), which
# a proxy never runs: half the binary, a lighter and faster `cork proxy`
# (docs/PERFORMANCE.md, "Memory").
sidecar:
	CGO_ENABLED=0 $(GO) build -tags nokube -trimpath -o bin/cork-sidecar ./cmd/cork

# The qemu backend's guest init (docs/QEMU.md): static, like cork.
guest:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/cork-guest ./cmd/cork-guest

test:
	$(GO) test -race -count=1 -timeout 40m ./...

image: sidecar
	docker build -t $(IMAGE) .

clean:
	rm -rf bin

bench:
	$(GO) run ./cmd/corkbench
