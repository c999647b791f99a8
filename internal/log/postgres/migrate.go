// Package postgres is the event store on PostgreSQL: appends with optimistic
// concurrency, stream reads with upcasting, snapshots and idempotency keys.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// versionTable records which migrations have been applied.
const versionTable = "tributary_schema_version"

// Migrate brings the database schema up to date. It is safe to run from
// several processes at once: tern holds an advisory lock while migrating.
func Migrate(ctx context.Context, databaseURL string) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("migrate: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// ErrSchemaOutdated means the database has not been migrated to the schema
// this binary needs.
var ErrSchemaOutdated = errors.New("database schema is not up to date")

// CheckSchema returns an error wrapping ErrSchemaOutdated, naming the versions,
// when the database is not at the newest migration. It changes nothing.
func CheckSchema(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) error {
	want, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", versionTable).Scan(&exists); err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	have := 0
	if exists {
		if err := q.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&have); err != nil {
			return fmt.Errorf("check schema: %w", err)
		}
	}
	if have != len(want) {
		return fmt.Errorf("%w: database is at version %d, this binary needs %d (run the migrate command or start with --migrate)", ErrSchemaOutdated, have, len(want))
	}
	return nil
}
