# Tributary's everyday commands. Every target starts the local Postgres and
# Redis first if they are installed but stopped.

DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tributary?sslmode=disable
export DATABASE_URL

.PHONY: run test services bench bench-pipeline chaos fuzz demo

## run: the platform on its embedded default: the writer on local Postgres (migrated on start)
## with an in-process Kafka (kfake on 127.0.0.1:9092, data in .dev/kafka), and the projector
## keeping the read models in the local Redis
run: services
	scripts/run-dev

## demo: a tour against a running `make run` (started and stopped by the demo itself when
## nothing answers on :8080): accounts opened under one correlation id, deposits, withdrawals,
## then the summaries (read-your-writes), a history page, the directory and the causation tree
demo:
	@curl -fs -o /dev/null --max-time 2 $${WRITER_URL:-http://127.0.0.1:8080}/healthz || scripts/services-up
	scripts/demo

## test: vet and the whole test suite with the race detector, against the real servers (installs
## Debian's prometheus package when missing: the telemetry tests run the real Prometheus and promtool).
## Four packages at a time on two cores: most tests wait on Postgres, Redis, Kafka or a fault more
## than they compute (the short chaos run alone waits out a 40 s stall). -trimpath keys the build
## cache by content alone, so a fresh clone or worktree reuses what another one compiled.
test: services
	@command -v promtool >/dev/null || apt-get install -y prometheus >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y prometheus >/dev/null 2>&1) || echo "make test: could not install Debian's prometheus package; the tests of internal/telemetry will fail saying so"
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	go vet -trimpath ./...
	go test -trimpath -race -count=1 -p 4 -timeout 15m ./...

services:
	@scripts/services-up

## bench: the writer's HTTP command rate beside the raw Postgres insert rate (load from wrk)
bench: services
	@command -v wrk >/dev/null || apt-get install -y wrk >/dev/null || (apt-get update >/dev/null && apt-get install -y wrk >/dev/null)
	go run ./cmd/bench writer

## bench-pipeline: the whole pipeline end to end (commands, command→reader latency, relay,
## projector and reader rates) beside the machine's ceilings, measured in the same run
bench-pipeline: services
	go run ./cmd/bench pipeline

## chaos: the release check: 50,000 commands through the platform as separate processes while
## 20 faults hit it (kill -9, Redis restart, Postgres pause, Kafka restart), then every promise
## verified; SEED=n replays a run (docs/CHAOS.md)
SEED ?= 1
chaos: services
	go run ./cmd/chaos --seed $(SEED) --commands 50000 --faults 20

## fuzz: fuzz commands and queries over HTTP, a minute each, against their OpenAPI documents: the
## writer and the reader on the platform's fixture domain, then the bank's account commands and
## queries (go test allows one fuzz target per run)
fuzz: services
	go test -run '^$$' -fuzz FuzzCommands -fuzztime 60s ./internal/writer/
	go test -run '^$$' -fuzz FuzzQueries -fuzztime 60s ./internal/reader/
	go test -run '^$$' -fuzz FuzzCommands -fuzztime 60s ./internal/domains/accountdomain/
	go test -run '^$$' -fuzz FuzzQueries -fuzztime 60s ./internal/domains/accountdomain/
