package api

// macchina.io REMOTE's paths: to be written.

func (a *API) compatRoutes() []route { return nil }
