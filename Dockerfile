# syntax=docker/dockerfile:1
# One image with Tributary's three binaries (writer, projector, reader) and
# the healthcheck probe, static and run as a non-root user. docker-compose.yml
# picks the binary per service with `entrypoint`; the default is the writer.
#
#   docker build -t tributary:dev .
#   docker run --rm tributary:dev --help

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o /out/ \
      ./cmd/writer ./cmd/projector ./cmd/reader ./cmd/healthcheck

# distroless/static: CA certificates, tzdata and /etc/passwd, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 8080 8081 8082
ENTRYPOINT ["/usr/local/bin/writer"]
