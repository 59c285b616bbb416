"""The terminal front-end: the `mailfix` command's verbs and what they print."""
