package web

// Users, groups and the visitor's own account: to be written.
func (w *Web) peopleRoutes() map[string]handler { return nil }
func (w *Web) meRoutes() map[string]handler     { return nil }
