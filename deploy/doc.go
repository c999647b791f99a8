// Package deploy holds Tributary's deployment files beside the tests that
// check them offline: docker-compose.yml at the repository root (loaded
// with compose-go, the loader `docker compose` uses) with its Prometheus,
// OpenTelemetry collector and Grafana files in deploy/compose/, and the
// Dockerfile. There is no code here.
package deploy
