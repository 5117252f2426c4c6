VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 0

.PHONY: build test bench install clean

build:
	go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/paasd ./cmd/paasd

test:
	go test -count=1 -timeout 60m ./...

bench:
	go run ./scripts/bench/push
	go run ./scripts/bench/rollout
	go run ./scripts/bench/live

install:
	scripts/install.sh

clean:
	rm -rf bin
