# presenced in a small image: build static, run on distroless as non-root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/presenced ./cmd/presenced \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/presencectl ./cmd/presencectl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/presenced /out/presencectl /usr/local/bin/
COPY examples/Config.xml /etc/presence/Config.xml
ENV PRESENCE_CONFIG=/etc/presence/Config.xml
ENTRYPOINT ["/usr/local/bin/presenced"]
