package postgres

// WaitingAppends tells a test how many appends wait for a group-commit slot.
func WaitingAppends(s *Store) int {
	s.group.mu.Lock()
	defer s.group.mu.Unlock()
	return len(s.group.waiting)
}
