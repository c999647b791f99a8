# syntax=docker/dockerfile:1
# One image with Tributary's three binaries (writer, projector, reader), the
# healthcheck probe and devtoken (the development token issuer of the compose
# stack), static and run as a non-root user. docker-compose.yml picks the
# binary per service with `entrypoint`; the default is the writer.
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
      ./cmd/writer ./cmd/projector ./cmd/reader ./cmd/healthcheck ./cmd/devtoken
# An empty directory for the final stage's /auth (there is no shell there).
RUN mkdir -m 0755 /empty

# distroless/static: CA certificates, tzdata and /etc/passwd, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# /auth, owned by the non-root user: a new volume mounted there (the compose
# stack's development key set) takes this owner, so devtoken init can write it.
COPY --from=build --chown=65532:65532 /empty /auth
USER 65532:65532
EXPOSE 8080 8081 8082
ENTRYPOINT ["/usr/local/bin/writer"]
