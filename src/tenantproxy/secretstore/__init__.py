"""secretstore."""
