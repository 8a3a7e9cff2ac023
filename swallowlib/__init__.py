"""swallowlib."""
