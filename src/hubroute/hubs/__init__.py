"""Your own model hub in hubroute: cards from Hugging Face card folders, card tables and the Hub
API, prompts from logs, and every change of the hub as an experience (:mod:`hubroute.hubs.folder`)."""
