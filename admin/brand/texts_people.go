package brand

// peopleTexts are the texts of users, groups and the visitor's own account.
var peopleTexts = map[string]string{}
