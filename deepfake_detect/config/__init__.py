"""Foundation: where the project lives, config resolvers, run naming, safe output files."""
