package testenv

// Getenv returns a getenv function that knows only the given name, value
// pairs: a command's environment for a test, independent of the process's.
func Getenv(kv ...string) func(string) string {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}
