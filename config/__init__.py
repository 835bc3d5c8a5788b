"""Everything that is read: server settings, repository config, AGENTS.md, secrets."""
