"""The web dashboard (`autoresearch serve`): `views` reads what the pages show from a task folder, `pages`
renders them (and the parts report.html shares), `app` serves them, live, read-only. `app` needs the
`serve` extra; `views` and `pages` only the core install."""
