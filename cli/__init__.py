"""Click commands behind the `fastseg` console script: thin wrappers over `fastseg` functions."""
