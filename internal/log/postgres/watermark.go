package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// WatermarkHolder is the oldest transaction on the Postgres server that holds
// a transaction id: the relay's watermark (the snapshot's xmin) cannot pass
// it, so no event committed after it started is relayed while it is open.
type WatermarkHolder struct {
	// Xmin and Xmax are the server's snapshot bounds: Xmin < Xmax while
	// some transaction that holds an id is running.
	Xmin, Xmax uint64
	// PID, ApplicationName and Started describe the oldest such transaction
	// as pg_stat_activity shows it (a prepared transaction: PID 0 and
	// "prepared transaction <gid>"); PID is 0 and Started zero when the
	// relay's role may not read them (another role's session, without
	// pg_read_all_stats).
	PID             int
	ApplicationName string
	Started         time.Time
}

// Held tells whether a transaction holds the watermark back at all.
func (h WatermarkHolder) Held() bool { return h.Xmin < h.Xmax }

const watermarkHolderSQL = `
SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text,
       coalesce(h.pid, 0), coalesce(h.application_name, ''), h.started
FROM pg_current_snapshot() AS s
LEFT JOIN LATERAL (
    SELECT pid, application_name, xact_start AS started, age(backend_xid) AS age
    FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
    UNION ALL
    SELECT 0, 'prepared transaction ' || gid, prepared, age(transaction) FROM pg_prepared_xacts
    ORDER BY age DESC LIMIT 1
) h ON true`

// FindWatermarkHolder reads the snapshot bounds and the oldest transaction
// holding an id, in one statement.
func FindWatermarkHolder(ctx context.Context, pool *pgxpool.Pool) (WatermarkHolder, error) {
	var h WatermarkHolder
	var xmin, xmax string
	var started *time.Time
	if err := pool.QueryRow(ctx, watermarkHolderSQL).Scan(&xmin, &xmax, &h.PID, &h.ApplicationName, &started); err != nil {
		return h, fmt.Errorf("find the transaction holding the watermark: %w", err)
	}
	var err error
	if h.Xmin, err = strconv.ParseUint(xmin, 10, 64); err != nil {
		return h, fmt.Errorf("snapshot xmin %q: %w", xmin, err)
	}
	if h.Xmax, err = strconv.ParseUint(xmax, 10, 64); err != nil {
		return h, fmt.Errorf("snapshot xmax %q: %w", xmax, err)
	}
	if started != nil {
		h.Started = *started
	}
	if !h.Held() {
		h.PID, h.ApplicationName, h.Started = 0, "", time.Time{}
	}
	return h, nil
}
