package api

// Routes still to be written (helpers fill these in).

func (a *API) userRoutes() []route   { return nil }
func (a *API) groupRoutes() []route  { return nil }
func (a *API) tokenRoutes() []route  { return nil }
func (a *API) enrollRoutes() []route { return nil }
func (a *API) auditRoutes() []route  { return nil }
func (a *API) compatRoutes() []route { return nil }
