"""wire/mysql."""
