"""`tenantproxy token`: a db-auth token for the current AWS credentials.

Like ``aws rds generate-db-auth-token``: the credentials come from boto3's usual chain
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, or a profile).
"""

from __future__ import annotations

import click

from tenantproxy.identity import generate_db_auth_token


@click.command("token")
@click.option("--user", required=True, help="The database user the token logs in as.")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="The proxy endpoint's host name."
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=3306,
    show_default=True,
    help="The proxy endpoint's port.",
)
@click.option(
    "--region",
    default=None,
    help="The signing region (default: the profile's region, else us-east-1).",
)
@click.option("--profile", default=None, help="An AWS profile to take the credentials from.")
def command(user: str, host: str, port: int, region: str | None, profile: str | None) -> None:
    """Print a db-auth token (a SigV4-presigned connect URL) for the current credentials."""
    import boto3  # type: ignore[import-untyped]
    import botocore.exceptions  # type: ignore[import-untyped]

    try:
        session = boto3.Session(profile_name=profile)
        credentials = session.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        raise click.ClickException(str(exc)) from None
    if credentials is None:
        raise click.ClickException(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(and AWS_SESSION_TOKEN from AssumeRole), or use --profile"
        )
    frozen = credentials.get_frozen_credentials()
    click.echo(
        generate_db_auth_token(
            host=host,
            port=port,
            db_user=user,
            region=region or session.region_name or "us-east-1",
            access_key_id=frozen.access_key,
            secret_access_key=frozen.secret_key,
            session_token=frozen.token,
        )
    )
