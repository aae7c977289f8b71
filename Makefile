# sftpgate — see README.md. `make run` and `make test` work on a fresh machine.

GO            ?= go
BIN           := $(CURDIR)/bin
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO         := $(BIN)/minio
MINIO_STAMP   := $(BIN)/.minio-$(MINIO_VERSION)
SFTPGATE      := $(BIN)/sftpgate
DEVDIR        := $(CURDIR)/.sftpgate-dev
# Unit packages run with the race detector; the end-to-end ones too, but
# they move hundreds of MiB, so they get their own timeout.
TEST_TIMEOUT  ?= 20m

export SFTPGATE_MINIO_BIN := $(MINIO)
export SFTPGATE_BIN       := $(SFTPGATE)

.PHONY: all build test soak lint run bench bench-tools compare minio tools clean

all: build

## build: the sftpgate binary in bin/
build:
	$(GO) build -o $(SFTPGATE) ./cmd/sftpgate

## minio: the pinned MinIO server in bin/ (built once; a long build)
minio: $(MINIO_STAMP)

$(MINIO_STAMP):
	@mkdir -p $(BIN)
	@for i in 1 2 3; do \
		GOBIN=$(BIN) $(GO) install github.com/minio/minio@$(MINIO_VERSION) && exit 0; \
		echo "minio build failed (attempt $$i); retrying in 10s"; sleep 10; \
	done; exit 1
	@touch $@

## tools: the system packages the end-to-end tests use (fuse3, sshpass, sshfs, OpenSSH client and server, rclone, PostgreSQL, HAProxy)
tools:
	@missing=""; \
	for c in fusermount3:fuse3 sshpass:sshpass sshfs:sshfs sftp:openssh-client ssh-keygen:openssh-client rclone:rclone; do \
		command -v $${c%%:*} >/dev/null 2>&1 || missing="$$missing $${c##*:}"; \
	done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing packages:$$missing (install them as root: apt-get install$$missing)"; exit 1; \
		fi; \
	fi

## lint: gofmt check and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')); \
	if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## test: every test, end-to-end ones included (real MinIO, real FUSE mounts, real SFTP clients)
test: tools minio build lint
	SFTPGATE_REQUIRE_POSTGRES=1 SFTPGATE_REQUIRE_HAPROXY=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

## soak: only the kill -9 fault loop (TestGatewayFaultLoop), for ROUNDS rounds
ROUNDS        ?= 200
SOAK_TIMEOUT  ?= $(shell echo $$(( $(ROUNDS) * 15 + 300 )))s
soak: tools minio build
	SFTPGATE_FAULT_ROUNDS=$(ROUNDS) $(GO) test -race -count=1 -v -run '^TestGatewayFaultLoop$$' -timeout $(SOAK_TIMEOUT) ./integration

## bench: throughput and memory benchmarks, printed as tables. BENCH selects
## them (a -bench regexp, e.g. BENCH=Peers); BenchmarkPeers (sftpgate beside
## minio-go, OpenSSH internal-sftp, MinIO SFTP, rclone) takes BENCH_MIB (the
## big file, MiB), BENCH_ROUNDS and writes its markdown table to BENCH_OUT too
BENCH        ?= .
BENCH_MIB    ?= 1024
BENCH_ROUNDS ?= 3
BENCH_OUT    ?= $(BIN)/bench-peers.md
bench: tools bench-tools minio build
	SFTPGATE_BENCH_MIB=$(BENCH_MIB) SFTPGATE_BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_OUT=$(BENCH_OUT) \
		$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -timeout 120m ./...

# bench-tools: OpenSSH's server, BenchmarkPeers' SSH ceiling (run with its
# own configuration on a loopback port, never as a service)
bench-tools:
	@if [ ! -x /usr/sbin/sshd ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server; \
		else \
			echo "missing package: openssh-server (install it as root: apt-get install openssh-server)"; exit 1; \
		fi; \
	fi

## compare: the speed of the tree against OLD (a git rev) in one run: both
## binaries interleaved, COMPARE_ROUNDS rounds, medians (see README, Benchmarks)
OLD    ?= bd380c4
COMPARE_ROUNDS ?= 5
compare: tools minio build
	@set -e; tmp=$$(mktemp -d); \
	trap 'git worktree remove --force "$$tmp/src" >/dev/null 2>&1 || true; rm -rf "$$tmp"; git worktree prune' EXIT; \
	git worktree add --detach --quiet "$$tmp/src" "$(OLD)"; \
	echo "old: $(OLD) = $$(git -C "$$tmp/src" rev-parse --short HEAD); new: this tree, $$(git rev-parse --short HEAD)$$(git diff --quiet HEAD || echo ' + uncommitted changes')"; \
	(cd "$$tmp/src" && $(GO) build -o $(BIN)/sftpgate-old ./cmd/sftpgate)
	SFTPGATE_COMPARE_BINS="old=$(BIN)/sftpgate-old,new=$(SFTPGATE)" SFTPGATE_COMPARE_ROUNDS=$(COMPARE_ROUNDS) \
		$(GO) test -count=1 -v -run '^TestCompareBinaries$$' -timeout 150m ./integration

## run: the quick start — a development gateway in .sftpgate-dev on port 2022
run: build
	$(SFTPGATE) --workdir $(DEVDIR) dev

clean:
	rm -f $(SFTPGATE)
