"""Host side: CLI, datasets, driver, estimators."""
