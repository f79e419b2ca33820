"""Export, inference runtimes and serving."""
