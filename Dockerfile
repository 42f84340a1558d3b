# syntax=docker/dockerfile:1
# Build: static, trimmed paths, version stamped, by the same `make build` the
# tests use (see build_test.go), so what is tested is what ships.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION}

# Run: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/leader-elector /leader-elector
USER 65532:65532
ENTRYPOINT ["/leader-elector"]
