# syntax=docker/dockerfile:1

# The gantry CLI as a static binary on distroless, running as nonroot.
#
#   docker build --build-arg VERSION=v0.4.1 -t gantry .
#   docker run --rm -v "$PWD:/specs" -w /specs gantry plan
#
# The image has no shell: run gantry commands, not scripts. Multi-platform
# builds (docker buildx build --platform linux/amd64,linux/arm64) cross-compile
# on the build host.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/gantry ./cmd/gantry

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="gantry" \
      org.opencontainers.image.description="Release AI models into GPU clusters the GitOps way" \
      org.opencontainers.image.source="https://github.com/gantry-dev/gantry"
COPY --from=build /out/gantry /gantry
USER nonroot:nonroot
ENTRYPOINT ["/gantry"]
