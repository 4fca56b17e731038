package web

// The audit view: to be written.
func (w *Web) auditRoutes() map[string]handler { return nil }
