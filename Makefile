# Convenience targets. The README's commands work without make.
IMAGE ?= cork:dev
GO ?= go

.PHONY: build test image bench clean guest

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/cork ./cmd/cork

# The qemu backend's guest init (docs/QEMU.md): static, like cork.
guest:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/cork-guest ./cmd/cork-guest

test:
	$(GO) test -race -count=1 -timeout 40m ./...

image: build
	docker build -t $(IMAGE) .

clean:
	rm -rf bin

bench:
	$(GO) run ./cmd/corkbench
