# fwctl — build, test, demo. Run `make help` for the targets.
# Everything a fresh Debian machine lacks is installed on demand (apt, go install).

GO        ?= go
BIN       := bin
STATICCHECK_VERSION := v0.8.2
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)

.PHONY: help tools build cross cross-test test test-short torture demo lint bench bench-delta bench-install bench-server bench-fleet bench-exposure demo-offline deps clean dist-bin docs deb deb-agents image torture-vm

help:
	@echo "make demo      release → publish → install flow on this machine (under a minute)"
	@echo "make test      every test, with real components (installs what is missing)"
	@echo "make build     bin/fwctl bin/fwrepo bin/fwagent"
	@echo "make cross     static fwagent for linux/arm (GOARM=7), arm64, riscv64, amd64"
	@echo "make lint      gofmt, go vet, staticcheck"
	@echo "make bench     benchmarks and fwagent sizes"
	@echo "make bench-delta    delta size/speed/RSS against bsdiff, xdelta3, zstd --patch-from"
	@echo "make bench-install  install speed and RSS against the floor (sha256 + dd)"
	@echo "make bench-server   fwrepo against nginx: timestamp req/s, image MB/s, RSS under load"
	@echo "make bench-fleet    10,000 simulated devices: p99 per poll, requests/bytes per poll, wave start time (SQLite, PostgreSQL)"
	@echo "make torture   1,000 random power cuts during updates"
	@echo "make torture-vm  power cuts on whole emulated machines (GRUB, QEMU) and crash states from write logs"
	@echo "make torture-vm-arm64  the arm64 machine booted by U-Boot alone: 50 whole-machine kills (about 40 min)"
	@echo "make cross-test     agent packages under qemu-user (arm GOARM=7, arm64, riscv64)"
	@echo "make deb       Debian packages of fwctl, fwrepo, fwagent in dist/ (units, example configs, man pages)"
	@echo "make deb-agents  fwagent packages for armhf, arm64, riscv64 in dist/agents"
	@echo "make image     fwrepo's OCI image in dist/ (OCI layout + docker-archive), without Docker"
	@echo "make docs      regenerate docs/cli/ from the command trees"

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/fwctl ./cmd/fwrepo ./cmd/fwagent

cross:
	@mkdir -p $(BIN)
	scripts/build-agent.sh arm $(BIN)/fwagent-linux-armv7 7
	scripts/build-agent.sh arm64 $(BIN)/fwagent-linux-arm64
	scripts/build-agent.sh riscv64 $(BIN)/fwagent-linux-riscv64
	scripts/build-agent.sh amd64 $(BIN)/fwagent-linux-amd64
	@ls -l $(BIN)/fwagent-linux-*

# Real components (swtpm, U-Boot/GRUB tools, ...) are installed by
# scripts/deps.sh when missing; with FW_REQUIRE_REAL=1 (CI) a test whose
# component is missing fails instead of skipping.
deps:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory tools

# The pinned Rekor, Trillian and cosign binaries the transparency tests run,
# and versitygw (the S3-compatible server of the object storage tests),
# built once into $$FW_TOOLS_DIR (about 15 minutes from a cold build cache
# on 2 cores, versitygw 3 of them; seconds when present).
tools:
	@scripts/rekor.sh build
	@scripts/cosign.sh >/dev/null
	@scripts/s3.sh build

# Every test (test/cross_test.go: the whole update of the cross-compiled
# fwagent on armv7, arm64 and riscv64 under qemu-user, and its size budget on
# all four architectures), then the agent's packages under qemu-user.
test: deps
	$(GO) test -count=1 -timeout 15m ./...
	scripts/cross-test.sh

# 1,000 random kill points instead of make test's 200; fwctl publish killed at
# every openat, write and fsync as well as every rename.
torture: deps
	cd test/powerloss && $(GO) test -count=1 -timeout 60m -torture
	cd cmd/fwctl && $(GO) test -count=1 -timeout 30m -run TestPublishKilled -torture

# Whole machines (test/vm, issue 19): 200 kills of the QEMU process and
# 1,000 crash states rebuilt from blklogwrites logs on x86_64 with GRUB,
# and 50 kills on arm64 with U-Boot (the -run pattern matches both tests).
# About 40 minutes a part under TCG on 2 cores with split boots
# (docs/powerloss.md); make test runs x86_64's short version. nice'd,
# since the machines are shared.
torture-vm: deps
	cd test/vm && FW_VM=1 nice -n 10 $(GO) test -count=1 -timeout 1200m -v -run TestPowerCuts -torture .

# The arm64 machine alone (test/vm/arm64_test.go: Debian's U-Boot, a
# redundant environment on the disk): issue 19's 50 kills, nice'd.
.PHONY: torture-vm-arm64
torture-vm-arm64: deps
	cd test/vm && FW_VM=1 nice -n 10 $(GO) test -count=1 -timeout 300m -v -run TestPowerCutsArm64 -torture .

cross-test: deps
	scripts/cross-test.sh

test-short:
	$(GO) test -short ./...

demo: build
	@scripts/demo.sh

demo-offline: build
	@scripts/demo-offline.sh

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v staticcheck >/dev/null || { echo "installing staticcheck $(STATICCHECK_VERSION)"; $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); }
	staticcheck ./...

bench: cross
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@budget=$$(sed -n 's/^const agentSizeBudget = \([0-9_]*\).*/\1/p' test/cross_test.go | tr -d _); \
	echo "fwagent size (stripped, static; budget $$budget bytes on every architecture, in test/cross_test.go):"; \
	for a in armv7 arm64 riscv64 amd64; do f=$(BIN)/fwagent-linux-$$a; n=$$(stat -c %s $$f); \
		printf '  %-22s %9d bytes %6.2f MB  %s\n' $$(basename $$f) $$n $$(echo "$$n / 1000000" | bc -l) \
			"$$([ $$n -le $$budget ] && echo ok || echo "OVER by $$((n - budget))")"; done

bench-delta:
	@scripts/bench-delta.sh

bench-install:
	@scripts/bench-install.sh

bench-server:
	@scripts/bench-server.sh

bench-fleet:
	@scripts/bench-fleet.sh

# Exposure query over 10,000 devices and 50 releases of 2,000 components on
# SQLite and PostgreSQL (issue 16: at most 1 s each).
bench-exposure:
	go test -run '^$$' -bench BenchmarkExposure -benchtime 3x ./repo/exposure

# Release artefacts (tools/fwdist, internal/packaging). The version comes
# from git, as the build here has no VCS stamp (GOFLAGS=-buildvcs=false);
# fwrepo is static so that the same file goes into the image.
DIST    ?= dist
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DIST_LDFLAGS := -s -w -X github.com/fwctl/fwctl/internal/cli.version=$(VERSION) -X github.com/fwctl/fwctl/internal/cli.commit=$(COMMIT)

dist-bin:
	@mkdir -p $(DIST)/bin
	$(GO) build -ldflags '$(DIST_LDFLAGS)' -o $(DIST)/bin/ ./cmd/fwctl ./cmd/fwagent
	CGO_ENABLED=0 $(GO) build -ldflags '$(DIST_LDFLAGS)' -o $(DIST)/bin/ ./cmd/fwrepo

deb: dist-bin
	$(GO) run ./tools/fwdist docs --bin $(DIST)/bin --man $(DIST)/man
	$(GO) run ./tools/fwdist deb --bin $(DIST)/bin --man $(DIST)/man --out $(DIST)

# fwagent's packages for the device architectures (armhf, arm64, riscv64)
# in $(DIST)/agents: the static release build of scripts/build-agent.sh,
# with the same units, example configs and man page as the host package.
deb-agents: dist-bin
	$(GO) run ./tools/fwdist docs --bin $(DIST)/bin --man $(DIST)/man
	@for a in arm:arm7 arm64:arm64 riscv64:riscv64; do goarch=$${a%%:*}; debarch=$${a##*:}; \
	  echo "fwagent for $$goarch"; mkdir -p $(DIST)/bin-$$goarch; \
	  FWAGENT_LDFLAGS='-X github.com/fwctl/fwctl/internal/cli.version=$(VERSION) -X github.com/fwctl/fwctl/internal/cli.commit=$(COMMIT)' \
	    scripts/build-agent.sh $$goarch $(DIST)/bin-$$goarch/fwagent 7 || exit 1; \
	  $(GO) run ./tools/fwdist deb --only fwagent --arch $$debarch --version $(VERSION) \
	    --bin $(DIST)/bin-$$goarch --man $(DIST)/man --out $(DIST)/agents || exit 1; done

image: dist-bin
	$(GO) run ./tools/fwdist image --bin $(DIST)/bin --out $(DIST)

docs: build
	$(GO) run ./tools/fwdist docs --bin $(BIN) --markdown docs/cli

clean:
	rm -rf $(BIN) $(DIST)
