"""A local stand-in for GitHub: REST, git smart HTTP, OpenAPI checks, webhook sender."""
