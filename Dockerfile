# syntax=docker/dockerfile:1
# Build: static, trimmed paths, version stamped, by the same `make build` the
# tests use (see build_test.go), so what is tested is what ships.
# The build stage runs on the builder's own platform and cross-compiles for
# the target's (buildx: --platform linux/amd64,linux/arm64).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev COMMIT=unknown DATE=unknown TARGETOS TARGETARCH
RUN GOOS=${TARGETOS} GOARCH=${TARGETARCH} make build VERSION=${VERSION} COMMIT=${COMMIT} DATE=${DATE}

# Run: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/leader-elector /leader-elector
USER 65532:65532
ENTRYPOINT ["/leader-elector"]
