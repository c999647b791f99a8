package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ClaimOutcome is what claiming an idempotency key found.
type ClaimOutcome int

const (
	// Claimed: the key is new (or its earlier claim expired); run the command.
	Claimed ClaimOutcome = iota
	// Replay: the key completed before; return the stored response.
	Replay
	// InProgress: another request with the key is running now.
	InProgress
	// Mismatch: the key was used before with another request.
	Mismatch
)

// StoredResponse is what a completed key remembers. A command that appended
// events is remembered by its stream and version range, from which the
// response is rebuilt exactly; any other outcome by its body.
type StoredResponse struct {
	Status                     int
	AggregateType, AggregateID string
	FirstVersion, LastVersion  int64
	Body                       json.RawMessage
}

// AppendedEvents reports whether the remembered command appended events.
func (r StoredResponse) AppendedEvents() bool { return r.LastVersion > 0 && r.Body == nil }

const claimSQL = `
INSERT INTO idempotency_keys (principal, key, request_hash, claimed_until)
VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
ON CONFLICT (principal, key) DO UPDATE SET claimed_until = excluded.claimed_until
WHERE idempotency_keys.completed_at IS NULL
  AND idempotency_keys.claimed_until < now()
  AND idempotency_keys.request_hash = excluded.request_hash
RETURNING true`

const lookupKeySQL = `
SELECT request_hash, completed_at IS NOT NULL, coalesce(response_status, 0),
       coalesce(aggregate_type, ''), coalesce(aggregate_id, ''),
       coalesce(first_version, 0), coalesce(last_version, 0), response_body
FROM idempotency_keys WHERE principal = $1 AND key = $2`

// ClaimIdempotencyKey claims key for principal for at most claimFor. A claim
// whose holder died expires then, and a retry with the same request may take
// it over. requestHash identifies the request, so the same key with another
// request is a Mismatch.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, principal, key string, requestHash []byte, claimFor time.Duration) (ClaimOutcome, StoredResponse, error) {
	for range 3 {
		var claimed bool
		err := s.pool.QueryRow(ctx, claimSQL, principal, key, requestHash, claimFor.Milliseconds()).Scan(&claimed)
		if err == nil {
			return Claimed, StoredResponse{}, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, StoredResponse{}, fmt.Errorf("claim idempotency key: %w", err)
		}
		var (
			hash      []byte
			completed bool
			r         StoredResponse
		)
		err = s.pool.QueryRow(ctx, lookupKeySQL, principal, key).Scan(&hash, &completed, &r.Status,
			&r.AggregateType, &r.AggregateID, &r.FirstVersion, &r.LastVersion, &r.Body)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // released between the two statements: claim again
		}
		if err != nil {
			return 0, StoredResponse{}, fmt.Errorf("look up idempotency key: %w", err)
		}
		switch {
		case !bytes.Equal(hash, requestHash):
			return Mismatch, StoredResponse{}, nil
		case completed:
			return Replay, r, nil
		default:
			return InProgress, StoredResponse{}, nil
		}
	}
	return InProgress, StoredResponse{}, nil
}

// CompleteIdempotencyKey remembers a response that appended nothing (a
// refused command, or one that decided no events) for the key: it completes
// the key's claim, or records the key completed when the request did not
// claim it first. It fails with ErrIdempotencyKeyCompleted when the key was
// completed already, and with ErrIdempotencyKeyMismatch when the key belongs
// to another request.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, principal, key string, hash []byte, status int, body json.RawMessage) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO idempotency_keys AS k (principal, key, request_hash, claimed_until, completed_at, response_status, response_body)
        VALUES ($1, $2, $3, now(), now(), $4, $5)
        ON CONFLICT (principal, key) DO UPDATE
            SET completed_at = excluded.completed_at, response_status = excluded.response_status,
                response_body = excluded.response_body, request_hash = excluded.request_hash`,
		principal, key, requestHash(hash), status, body)
	switch {
	case isKeyCompletedAlready(err):
		return fmt.Errorf("complete idempotency key %s: %w", key, ErrIdempotencyKeyCompleted)
	case isKeyOfAnotherRequest(err):
		return fmt.Errorf("complete idempotency key %s: %w", key, ErrIdempotencyKeyMismatch)
	case err != nil:
		return fmt.Errorf("complete idempotency key: %w", err)
	}
	return nil
}

// LookupIdempotencyKey returns what the key remembers once it is completed;
// completed is false while it is only claimed or unknown.
func (s *Store) LookupIdempotencyKey(ctx context.Context, principal, key string) (r StoredResponse, completed bool, err error) {
	var hash []byte
	err = s.pool.QueryRow(ctx, lookupKeySQL, principal, key).Scan(&hash, &completed, &r.Status,
		&r.AggregateType, &r.AggregateID, &r.FirstVersion, &r.LastVersion, &r.Body)
	if errors.Is(err, pgx.ErrNoRows) {
		return StoredResponse{}, false, nil
	}
	if err != nil {
		return StoredResponse{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}
	return r, completed, nil
}

// requestHash is a request's hash as stored: never NULL.
func requestHash(h []byte) []byte {
	if h == nil {
		return []byte{}
	}
	return h
}

// ErrIdempotencyKeyCompleted means another run of the request completed its
// Idempotency-Key first (this run's claim had expired, and a retry took it
// over): this run stored nothing, and the answer is the other run's, which
// a new claim replays.
var ErrIdempotencyKeyCompleted = errors.New("the idempotency key was completed by another run of the request")

// ErrIdempotencyKeyMismatch means the key was claimed or completed for
// another request (another request hash): this request stored nothing.
var ErrIdempotencyKeyMismatch = errors.New("the idempotency key belongs to another request")

// isKeyOfAnotherRequest tells whether err is the database refusing to record
// a key for a request other than its own (migration 008).
func isKeyOfAnotherRequest(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "TB002"
}

// isKeyCompletedAlready tells whether err is the database refusing to
// complete a completed key (migration 005).
func isKeyCompletedAlready(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "TB001"
}

// ReleaseIdempotencyKey gives up a claim that did not complete (the command
// failed for a reason worth retrying), so the next retry runs the command.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, principal, key string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND completed_at IS NULL`, principal, key)
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// ExpireIdempotencyKeys deletes completed keys older than maxAge and returns
// how many went. Clients must not retry with a key older than that.
func (s *Store) ExpireIdempotencyKeys(ctx context.Context, maxAge time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - $1 * interval '1 millisecond'
        AND (completed_at IS NOT NULL OR claimed_until < now())`, maxAge.Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("expire idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
