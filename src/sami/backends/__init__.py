"""Text generation backends: one module per built-in kind, registered on import of this package."""
