package web

// The device pages, the add-device form and enrolment keys: to be written.
func (w *Web) deviceRoutes() map[string]handler { return nil }
