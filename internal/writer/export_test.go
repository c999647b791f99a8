package writer

// Routes returns the patterns of the API's ServeMux, the catch-all aside.
func (s *Server) Routes() []string {
	var patterns []string
	for _, rt := range s.routes() {
		patterns = append(patterns, rt.pattern)
	}
	return patterns
}
