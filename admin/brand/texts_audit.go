package brand

// auditTexts are the texts of the audit view.
var auditTexts = map[string]string{}
