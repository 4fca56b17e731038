package api

// ServedRoutes is every method and path the API serves, for the test that
// holds them to the OpenAPI document.
func ServedRoutes() (routes [][2]string) {
	for _, rt := range (&API{}).routes() {
		routes = append(routes, [2]string{rt.method, rt.path})
	}
	return routes
}
