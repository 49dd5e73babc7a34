"""Secret stores: where each tenant's database credentials live.

``Secret`` has the AWS Secrets Manager shape; ``SecretStore`` is the protocol the proxy uses;
``FileSecretStore`` is the default, an encrypted local file.
"""

from tenantproxy.secretstore.file_store import FileSecretStore
from tenantproxy.secretstore.store import Secret, SecretStore

__all__ = ["FileSecretStore", "Secret", "SecretStore"]
