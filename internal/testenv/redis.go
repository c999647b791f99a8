package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisAddr is the machine's Redis unless TEST_REDIS_ADDR names another.
const DefaultRedisAddr = "127.0.0.1:6379"

// RedisAddr is the address of the Redis tests use.
func RedisAddr() string {
	if a := os.Getenv("TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return DefaultRedisAddr
}

// Redis returns a client of the real Redis and a key prefix of this test's
// own; every key under the prefix is deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: RedisAddr()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("testenv: Redis at %s: %v (start it with: redis-server --daemonize yes --port 6379 --save '' --appendonly no)", RedisAddr(), err)
	}
	prefix := "test-" + randomHex(6)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		DeleteRedisKeys(ctx, rdb, prefix)
		_ = rdb.Close()
	})
	return rdb, prefix
}

// DeleteRedisKeys removes every key that starts with prefix.
func DeleteRedisKeys(ctx context.Context, rdb *redis.Client, prefix string) {
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			rdb.Unlink(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		rdb.Unlink(ctx, keys...)
	}
}
