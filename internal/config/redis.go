package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis is where the read models live: the settings every process that
// reads or writes them shares.
type Redis struct {
	URL     string
	Cluster bool
	Prefix  string
}

// Register adds the Redis flags and their environment variables to fs.
func (r *Redis) Register(fs *Set) {
	fs.StringVar(&r.URL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL of the read models (rediss:// for TLS)")
	fs.Env("redis-url", "REDIS_URL")
	fs.BoolVar(&r.Cluster, "redis-cluster", false, "Redis is a cluster: --redis-url names its nodes (redis://host:port?addr=host2:port2)")
	fs.Env("redis-cluster", "REDIS_CLUSTER")
	fs.StringVar(&r.Prefix, "redis-prefix", "tributary", "prefix of every Redis key")
	fs.Env("redis-prefix", "REDIS_PREFIX")
}

// Check validates the settings after parsing; errors name the setting.
func (r Redis) Check(fs *Set) error {
	if r.Prefix == "" || strings.ContainsAny(r.Prefix, "{} ") {
		return fmt.Errorf("%s must be non-empty, without braces or spaces", fs.Setting("redis-prefix"))
	}
	if _, err := r.Options(); err != nil {
		return fmt.Errorf("%s: %v", fs.Setting("redis-url"), err)
	}
	return nil
}

// Options parses the URL into client options.
func (r Redis) Options() (*redis.UniversalOptions, error) {
	if r.Cluster {
		o, err := redis.ParseClusterURL(r.URL)
		if err != nil {
			return nil, err
		}
		return &redis.UniversalOptions{Addrs: o.Addrs, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig, IsClusterMode: true}, nil
	}
	o, err := redis.ParseURL(r.URL)
	if err != nil {
		return nil, err
	}
	return &redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}, nil
}

// Redacted is the URL with any password masked, for logs and messages.
func (r Redis) Redacted() string {
	u, err := url.Parse(r.URL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
