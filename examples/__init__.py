"""A worked plugin method and its regression checks (see README, "Add and regression-test your own method")."""
