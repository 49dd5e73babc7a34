"""tenantproxy: a multi-tenant MySQL/MariaDB proxy and the kit that load-tests it."""

__version__ = "0.1.0"
