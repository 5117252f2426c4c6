VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 0

.PHONY: build test bench install clean

build:
	go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/paasd ./cmd/paasd

test:
	go test -count=1 -timeout 60m ./...

bench:
	go run ./scripts/bench/push
	scripts/install.sh --bench-deps
	go run ./scripts/bench/router
	go run ./scripts/bench/rollout
	go run ./scripts/bench/pgbackup
	go run ./scripts/bench/live
	go run ./scripts/bench/ssh
	go run ./scripts/bench/cluster
	go run ./scripts/bench/routeridle
	go run ./scripts/bench/api
	go run ./scripts/bench/dashboard
	go run ./scripts/bench/backup
	go test -run '^$$' -bench Tick -benchtime 100x ./internal/cron

install:
	scripts/install.sh

clean:
	rm -rf bin
