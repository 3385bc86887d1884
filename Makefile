# task-job developer commands. `make help` lists them.
SHELL := /bin/bash
GO    ?= go
PKGS  := ./...
# Every parser of untrusted input has a fuzz target; `make fuzz` runs each
# for FUZZTIME (CI: a short smoke run; locally, raise it).
FUZZTIME ?= 10s
FUZZ := ./task:FuzzParse ./task:FuzzParseControl ./task:FuzzAppendLine ./jail:FuzzSplit ./jail:FuzzJoin ./jail:FuzzResolve ./jail:FuzzLoaderOf ./config:FuzzParse \
	./policy:FuzzParse ./policy:FuzzDecide ./audit:FuzzParseLine ./signature:FuzzCanonical \
	./bytesize:FuzzParse ./api:FuzzParseTokens ./api:FuzzQueryFilters ./queue/kafkaqueue:FuzzFold ./signature/kafkaguard:FuzzFold

.PHONY: help deps build cross package test quick unit history fleet-scale chaos vmtest fuzz bench bench-quick lint run-dev clean audit-sandbox

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install what the tests and the benchmark need (redis, etcd-server for the fleet tests, the sandbox peers bubblewrap, runc, crun, busybox for the container-side scripts, zsh for its completion test, and chromium for the page test) with apt-get when missing
	@missing=""; \
	for cp in redis-server:redis-server redis-sentinel:redis-sentinel redis-cli:redis-tools etcd:etcd-server busybox:busybox-static zsh:zsh bwrap:bubblewrap runc:runc crun:crun systemd-analyze:systemd openssl:openssl setpriv:util-linux chromium:chromium; do \
		command -v $${cp%%:*} >/dev/null || missing="$$missing $${cp##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root, or: apt-get install$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@redis-server --version

build: ## build ./task-job and its sandbox helper ./task-job-init for this machine
	$(GO) build -o task-job ./cmd/task-job
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o task-job-init ./cmd/task-job-init

cross: ## cross-build static binaries for linux, windows, darwin and freebsd into dist/
	./build.sh all

package: ## build dist/: a .deb for linux and a tarball per OS (go run ./packaging)
	$(GO) run ./packaging -out dist

test: deps lint cross unit history vmtest bench-quick fuzz ## everything CI runs: lint, cross-builds, all tests with -race, the history checker, a short benchmark run, fuzz smoke

# The fast tests: the parsers, policy, jail paths, config, signatures and the
# broker contract on the in-memory transport;
# no Redis, sandbox or root needed, a few seconds (`make unit` is the rest).
QUICK := ./task/ ./policy/ ./jail/ ./config/ ./bytesize/ ./signature/ ./queue/memqueue/
quick: ## the fast tests only (seconds; no Redis, no root), for the edit-test loop
	$(GO) test -count=1 $(QUICK)

# Files a test run keeps (the page test's screenshot) go to artefacts/,
# which CI collects; set TEST_ARTEFACTS to put them elsewhere.
unit: export TEST_ARTEFACTS ?= $(CURDIR)/artefacts
unit: ## all tests with the race detector (the history checker has its own target); artefacts in ./artefacts
	$(GO) test -race -count=1 -timeout 45m $$($(GO) list $(PKGS) | grep -v /test/history)

# The history checker: random seeded histories of executors, Redis and
# faults, checked against the lifecycle invariants. CI runs it for
# HISTORY_TIME; `make chaos DURATION=1h` for longer. FAULTS picks the fault
# classes (all, none, or a list such as dup,kill,-pause).
HISTORY_TIME ?= 150s
DURATION     ?= 10m
FAULTS       ?=
history: ## the history checker, bounded for CI (HISTORY_TIME, default 150s), with its counts
	$(GO) test -race -count=1 -v -timeout 15m -skip 'TestKafkaHistory$$' ./test/history/ -args -kafka=0 -duration=$(HISTORY_TIME) $(if $(FAULTS),-faults=$(FAULTS))

fleet-scale: ## five executors in network namespaces, a dispatcher pair, 10,000 tasks with faults (2-3 min)
	$(GO) test -count=1 -v -timeout 20m -run 'TestFleetScale$$' ./test/history/ -args -scale=10000

chaos: ## the history checker for DURATION (default 10m), Kafka histories too: make chaos DURATION=1h [FAULTS=all]
	$(GO) test -count=1 -v -timeout 0 -run 'TestHistory$$|TestFleetHistory$$|TestKafkaHistory$$|TestFleetScale$$' ./test/history/ -args -scale=10000 -duration=$(DURATION) $(if $(FAULTS),-faults=$(FAULTS))

vmtest: ## run the sandbox tests inside a pure cgroup v2 VM under QEMU
	$(GO) run ./test/vm

fuzz: ## run every fuzz target for FUZZTIME
	@set -e; for t in $(FUZZ); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) $$pkg; done

bench: deps ## the benchmark table: task-job against raw baselines measured in the same run
	$(GO) run ./test/bench

bench-quick: deps ## a short benchmark run (CI runs it so the benchmark cannot rot)
	$(GO) run ./test/bench -quick

lint: ## gofmt, go mod tidy, go vet on every target OS, and staticcheck
	$(GO) mod tidy -diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)
	@for os in windows darwin freebsd; do GOOS=$$os $(GO) vet ./cmd/... ./sandbox/... ./jail/... ./spool/... ./config/... ./task/... ./queue/... ./executor/... ./policy/... ./audit/... ./signature/... ./internal/... || exit 1; done

audit-sandbox: ## (root) run a probe in the real sandbox and print what a task can and cannot do; CI compares it with sandbox/testdata/audit-sandbox.md
	@CGO_ENABLED=0 $(GO) build -trimpath -o task-job-init ./cmd/task-job-init
	@CGO_ENABLED=0 $(GO) build -trimpath -o sandbox-probe ./sandbox/probe
	@./sandbox-probe -run -init $(CURDIR)/task-job-init

run-dev: ## the quick start: embedded in-memory endpoint + executor, nothing to install
	$(GO) run ./cmd/task-job dev

clean: ## remove build output and test artefacts
	rm -rf dist task-job task-job-init sandbox-probe artefacts
