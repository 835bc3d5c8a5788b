"""GitHub-facing side of Gantry: webhooks, commands, permissions, App auth, reporting."""
