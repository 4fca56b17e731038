package brand

// deviceTexts are the texts of the device pages, the add-device form and enrolment keys.
var deviceTexts = map[string]string{}
