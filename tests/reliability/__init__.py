"""Issue 12: reliability and security regressions (each reproduces a reported failure)."""
