// Package config parses a command's flags with environment-variable fallbacks
// in one place, so that every setting has one name on the command line and one
// in the environment, and a bad value stops the process naming the setting.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Set is a flag set whose flags may also come from the environment.
type Set struct {
	*flag.FlagSet
	env map[string]string // flag name → environment variable
}

// New returns an empty set for the named command; usage goes to out.
func New(name string, out io.Writer) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return &Set{FlagSet: fs, env: make(map[string]string)}
}

// Env binds flag name to environment variable env: when the flag is not given
// on the command line and env is set, env's value is used.
func (s *Set) Env(name, env string) {
	if s.Lookup(name) == nil {
		panic("config: no flag " + name)
	}
	s.env[name] = env
	f := s.Lookup(name)
	if !strings.Contains(f.Usage, "$"+env) {
		f.Usage += " ($" + env + ")"
	}
}

// Parse parses args, then fills every flag not given on the command line from
// its environment variable. Errors name both the flag and the variable.
func (s *Set) Parse(args []string, getenv func(string) string) error {
	if err := s.FlagSet.Parse(args); err != nil {
		return err
	}
	given := make(map[string]bool)
	s.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	for name, env := range s.env {
		if given[name] {
			continue
		}
		if v := getenv(env); v != "" {
			if err := s.Set(name, v); err != nil {
				errs = append(errs, fmt.Errorf("invalid %s=%q (flag --%s): %v", env, v, name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Setting names a flag and its environment variable for error messages,
// e.g. "--database-url / DATABASE_URL".
func (s *Set) Setting(name string) string {
	if env, ok := s.env[name]; ok {
		return "--" + name + " / " + env
	}
	return "--" + name
}

// UsageError is a bad command line or setting: the process should exit with
// code 2 (see ExitCode).
type UsageError struct{ Err error }

func (u UsageError) Error() string { return u.Err.Error() }

// Unwrap returns the underlying error.
func (u UsageError) Unwrap() error { return u.Err }

// ExitCode is the process exit code for err: 2 for a UsageError or a help
// request, 1 for any other failure.
func ExitCode(err error) int {
	var u UsageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}
