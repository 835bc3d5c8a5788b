"""A local stand-in for GitHub: REST, git smart HTTP, OpenAPI checks, webhook sender.

Layout (like GitHub Enterprise Server, so `GITHUB_API_URL` is the only knob a client turns):

- `{base_url}/api/v3/...` is the REST API (`Forge.api_url`). Every request there is checked
  against GitHub's OpenAPI description (`@octokit/openapi`); what GitHub would refuse is
  answered 404/400/422 and recorded in `Forge.violations`.
- `{base_url}/{owner}/{repo}.git` is git's smart HTTP (`git http-backend`), with Basic auth
  `x-access-token:<installation token>`; this is the `clone_url` in repository objects and
  in webhook payloads from `Forge.send_webhook`.

Modules: `data` (fetch the npm data), `openapi` (the contract, pure), `auth` (JWTs, tokens),
`state` (records), `render` (GitHub-shaped JSON), `git_repo` (bare repos), `git_http`,
`rest*` (handlers and middlewares), `faults`, `sender`, `server` (`Forge`), `pytest_plugin`
(the `forge` fixture) and `__main__` (standalone, for the demo).
"""
