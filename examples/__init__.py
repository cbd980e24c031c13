"""A worked plugin method and its regression checks (see README, "Plugins: your own method")."""
