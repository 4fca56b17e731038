package api

// Routes still to be written: users, groups, tokens, enrolment keys and
// the audit log (each moves to its own file).

func (a *API) userRoutes() []route   { return nil }
func (a *API) groupRoutes() []route  { return nil }
func (a *API) tokenRoutes() []route  { return nil }
func (a *API) enrollRoutes() []route { return nil }
func (a *API) auditRoutes() []route  { return nil }
