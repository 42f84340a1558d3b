# leader-elector: the two set-up commands are `make demo` and `make test`.
SHELL := /usr/bin/env bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's time, not the build's: two builds of one commit are the same.
DATE ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo unknown)
BIN ?= bin
# The release build: static, reproducible paths, version stamped. The
# Dockerfile's build stage runs `make build` too, so both stay the same.
GO_BUILD = CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)"

.PHONY: build test fuzz demo bench controlplane image image-docker release clean

build:
	$(GO_BUILD) -o $(BIN)/leader-elector .

# Builds the local control plane once (minutes), then vet, unit and
# end-to-end tests with the race detector: the product's module, the
# release tooling's (release/: no goroutines of its own, so without the race
# detector, which only slows its compression sixfold), then the test
# tooling's (test/: the harness, e2e, real pods, chaos, bench, demo).
# The fuzz targets run their seed corpora here, every input ever found
# included; new inputs are searched by `make fuzz`, apart, so that the gate
# gives the same answer on every run.
test: controlplane
	go vet ./...
	cd release && go vet ./...
	cd test && go vet ./...
	go test -race -count=1 -timeout 30m ./...
	cd release && go test -count=1 -timeout 30m ./...
	cd test && go test -race -count=1 -timeout 30m ./...

# Native Go fuzzing of the inputs a user or the API server controls: a Lease
# record, the environment, the status file path, the originals' arguments.
# The seed corpora under */testdata/fuzz/ also run in every plain `go test`;
# add what this finds there.
FUZZTIME ?= 1m
fuzz:
	go test -run='^$$' -fuzz='^FuzzDecision$$' -fuzztime=$(FUZZTIME) ./election/
	go test -run='^$$' -fuzz='^FuzzLoad$$' -fuzztime=$(FUZZTIME) ./internal/config/
	go test -run='^$$' -fuzz='^FuzzResolve$$' -fuzztime=$(FUZZTIME) ./status/
	go test -run='^$$' -fuzz='^FuzzTranslate$$' -fuzztime=$(FUZZTIME) ./internal/dropins/compat/

demo: controlplane
	cd test && go run ./demo

# Side by side with client-go's elector at 3, 50 and 200 replicas; prints
# numbers, never fails on them, and writes test/bench/out/results.md and
# handover.svg (BENCH_OUT). A full run takes about half an hour on 2 cores;
# for development: BENCH_REPLICAS=3 BENCH_ROUNDS=3 BENCH_CRASH_ROUNDS=1
# BENCH_WINDOW=10s make bench. See test/bench/main.go for every variable.
bench: controlplane
	cd test && go run ./bench

# The fault suite at length: 200 rounds (CHAOS_ROUNDS), one fault each from
# a logged seed (CHAOS_SEED replays it); prints a table per fault.
chaos: controlplane
	cd test && CHAOS_ROUNDS=$${CHAOS_ROUNDS:-200} go test -race -count=1 -timeout 150m -v -run '^TestChaos$$' ./chaos/

controlplane:
	@bash hack/controlplane/build.sh >/dev/null

# The release image without a container engine: one OCI index for
# linux/amd64 and linux/arm64 (PLATFORMS), reproducible, written as an OCI
# layout (bin/image/oci) and archive (bin/image/*.oci.tar) for crane push,
# ctr images import or docker load; PUSH=registry/repository:tag pushes it.
IMAGE ?= ghcr.io/leader-elector/leader-elector:$(VERSION)
PLATFORMS ?= linux/amd64,linux/arm64
RELEASE_FLAGS = -repo .. -version $(VERSION) -commit $(COMMIT) -date $(DATE)
image:
	cd release && go run . image $(RELEASE_FLAGS) -out ../bin/image -tag $(IMAGE) -platforms $(PLATFORMS) $(if $(PUSH),-push $(PUSH))

# The same image by Docker or Podman (buildx for the two platforms).
image-docker:
	docker buildx build --platform $(PLATFORMS) --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t $(IMAGE) .

# The release files: a static binary per platform, the kubectl plugin's
# archives, an SBOM per binary, SHA256SUMS and the krew manifest, into
# bin/release; reproducible for one commit.
release:
	cd release && go run . binaries $(RELEASE_FLAGS) -out ../bin/release

clean:
	rm -rf bin
