# presenced in a small image: build static, run on distroless as non-root.
# The kamailio target is the presence server the tests use, for compose.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/presenced ./cmd/presenced \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/presencectl ./cmd/presencectl \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/devkamailio ./internal/siptest/devkamailio

FROM debian:bookworm-slim AS kamailio
RUN apt-get update \
 && apt-get install -y --no-install-recommends kamailio kamailio-presence-modules \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/devkamailio /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/devkamailio", "-host", "0.0.0.0", "-port", "5060", "-dir", "/var/lib/presence-kamailio"]

FROM gcr.io/distroless/static-debian12:nonroot AS presenced
COPY --from=build /out/presenced /out/presencectl /usr/local/bin/
COPY examples/Config.xml /etc/presence/Config.xml
ENV PRESENCE_CONFIG=/etc/presence/Config.xml
# distroless has no HTTP client: presenced asks its own /readyz.
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 CMD ["/usr/local/bin/presenced", "-healthcheck"]
ENTRYPOINT ["/usr/local/bin/presenced"]
