package postgres_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tributary-es/tributary/internal/log/postgres"
	"github.com/tributary-es/tributary/internal/testenv"
)

// schemaState lists the functions of the public schema with their full
// definitions, the columns of events and every trigger.
func schemaState(t *testing.T, ctx context.Context, dbURL string) []string {
	t.Helper()
	pool := testenv.PostgresPool(t, dbURL)
	defer pool.Close()
	var state []string
	rows, err := pool.Query(ctx, `SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		state = append(state, "function "+name+"\n"+def)
	}
	rows.Close()
	rows, err = pool.Query(ctx, `SELECT column_name, data_type, is_nullable, coalesce(column_default, '')
        FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'events' ORDER BY ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, typ, nullable, def string
		if err := rows.Scan(&name, &typ, &nullable, &def); err != nil {
			t.Fatal(err)
		}
		state = append(state, fmt.Sprintf("column %s %s nullable=%s default=%s", name, typ, nullable, def))
	}
	rows.Close()
	rows, err = pool.Query(ctx, `SELECT tgname || ' on ' || tgrelid::regclass::text || ': ' || pg_get_triggerdef(oid)
        FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			t.Fatal(err)
		}
		state = append(state, "trigger "+def)
	}
	rows.Close()
	return state
}

func migrateTo(t *testing.T, ctx context.Context, dbURL string, version int32) {
	t.Helper()
	if err := postgres.MigrateTo(ctx, dbURL, version); err != nil {
		t.Fatalf("migrate to %d: %v", version, err)
	}
}

// The down sections of the latest migrations restore what the migrations
// before them created — 008's the append function of 007 and 005's trigger,
// 007's the functions of 003 to 006 and events without on_behalf_of — and
// their up sections apply again on top of that.
func TestTheLatestMigrationsGoDownAndUp(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.PostgresURL(t) // at the newest version
	newest := schemaState(t, ctx, dbURL)
	for _, want := range []string{"column on_behalf_of text nullable=NO default=''::text", "c_idem_hash bytea[]", "TB002", "idempotency_complete_once on idempotency_keys"} {
		if !strings.Contains(strings.Join(newest, "\n"), want) {
			t.Fatalf("no %q at the newest version:\n%s", want, strings.Join(newest, "\n"))
		}
	}
	for _, version := range []int32{8, 7} {
		migrateTo(t, ctx, dbURL, version-1)
		down := schemaState(t, ctx, dbURL)
		migrateTo(t, ctx, dbURL, 2) // before 003 created the first group-commit function
		migrateTo(t, ctx, dbURL, version-1)
		if up := schemaState(t, ctx, dbURL); !reflect.DeepEqual(down, up) {
			t.Errorf("%03d's down section left\n%s\n\nmigrations up to %03d make\n%s", version, strings.Join(down, "\n"), version-1, strings.Join(up, "\n"))
		}
	}
	migrateTo(t, ctx, dbURL, 8)
	if again := schemaState(t, ctx, dbURL); !reflect.DeepEqual(again, newest) {
		t.Errorf("007 and 008 applied again made\n%s\n\nthe first time\n%s", strings.Join(again, "\n"), strings.Join(newest, "\n"))
	}
	if err := postgres.CheckSchema(ctx, testenv.PostgresPool(t, dbURL)); err != nil {
		t.Fatal(err)
	}
}
