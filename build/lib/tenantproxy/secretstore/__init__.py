"""Secret stores: where each tenant's database credentials live.

``Secret`` has the AWS Secrets Manager shape; ``SecretStore`` is the protocol the proxy uses;
``FileSecretStore`` is the default, an encrypted local file; ``AwsSecretStore`` reads AWS Secrets
Manager (or moto's server) and caches what it reads.
"""

from tenantproxy.secretstore.aws_store import AwsSecretStore
from tenantproxy.secretstore.file_store import FileSecretStore
from tenantproxy.secretstore.store import Secret, SecretStore

__all__ = ["AwsSecretStore", "FileSecretStore", "Secret", "SecretStore"]
