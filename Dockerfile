# Switchboard container image: a static binary on distroless, non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t switchboard .
#   docker run -p 8080:8080 --stop-timeout 20 --restart unless-stopped switchboard
#
# See docs/operations.md.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/switchboard ./cmd/switchboard

# distroless/static: CA certificates and tzdata, no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchboard /usr/local/bin/switchboard
# 65532:65532, the image's "nonroot" user.
USER nonroot:nonroot
ENV SWITCHBOARD_ADDR=:8080
EXPOSE 8080
# SIGTERM starts the graceful shutdown (close 1001, bindings removed). Give
# the container more than SHUTDOWN_TIMEOUT (10s) to stop: docker run
# --stop-timeout 20, compose stop_grace_period: 20s, Kubernetes
# terminationGracePeriodSeconds: 30.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: the image has no shell or curl. Let the orchestrator probe
# GET /healthz (liveness) and GET /readyz (readiness); see docs/operations.md.
ENTRYPOINT ["/usr/local/bin/switchboard"]
