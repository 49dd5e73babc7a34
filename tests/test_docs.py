"""The docs keep up with the config models, and their TOML examples are valid.

Each model's fields must be named (as `field`) in the doc listed for it below.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from tenantproxy.accessapi.config import AccessApiConfig
from tenantproxy.config import (
    AwsSecretStoreConfig,
    EndpointConfig,
    FileSecretStoreConfig,
    IamAuthConfig,
    ProxyConfig,
    TargetConfig,
    TracingConfig,
)
from tenantproxy.identity.config import IdentityConfig, PrincipalConfig, RoleConfig
from tenantproxy.stack.settings import StackSettings

DOCS = Path(__file__).resolve().parents[1] / "docs"
CONFIGURATION_DOC = DOCS / "configuration.md"
IDENTITY_DOC = DOCS / "identity.md"
# doc -> the models whose every field it must name
MODELS_BY_DOC: dict[Path, list[type[BaseModel]]] = {
    CONFIGURATION_DOC: [
        ProxyConfig,
        EndpointConfig,
        TargetConfig,
        FileSecretStoreConfig,
        AwsSecretStoreConfig,
        IamAuthConfig,
        TracingConfig,
        StackSettings,
        AccessApiConfig,
    ],
    IDENTITY_DOC: [IdentityConfig, RoleConfig, PrincipalConfig],
}
FENCED_TOML = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def toml_examples(doc: Path) -> list[str]:
    return FENCED_TOML.findall(doc.read_text())


@pytest.mark.parametrize(
    ("doc", "model", "field"),
    [
        (doc, model, field)
        for doc, models in MODELS_BY_DOC.items()
        for model in models
        for field in model.model_fields
    ],
    ids=lambda value: value.name if isinstance(value, Path) else getattr(value, "__name__", value),
)
def test_every_setting_is_in_its_doc(doc: Path, model: type[BaseModel], field: str) -> None:
    assert f"`{field}`" in doc.read_text(), f"{model.__name__}.{field} is not in {doc}"


def example_kind(document: dict[str, object]) -> str:
    # A proxy config always has endpoints; an access API config always names the proxy's
    # reader endpoint; a stack file has neither.
    if "endpoints" in document:
        return "proxy"
    if "proxy_reader_endpoint" in document:
        return "accessapi"
    return "stack"


def test_the_reference_has_proxy_stack_and_access_api_examples() -> None:
    kinds = [example_kind(tomllib.loads(text)) for text in toml_examples(CONFIGURATION_DOC)]
    assert {"proxy", "stack", "accessapi"} <= set(kinds), kinds


@pytest.mark.parametrize(
    "text", toml_examples(CONFIGURATION_DOC), ids=lambda text: text.splitlines()[0]
)
def test_each_configuration_example_parses_and_validates(text: str) -> None:
    # Validation does not open the paths, so the examples' paths need not exist here.
    document = tomllib.loads(text)
    model = {"proxy": ProxyConfig, "accessapi": AccessApiConfig, "stack": StackSettings}
    model[example_kind(document)].model_validate(document)


def test_the_identity_doc_has_an_example() -> None:
    assert toml_examples(IDENTITY_DOC)


@pytest.mark.parametrize("text", toml_examples(IDENTITY_DOC), ids=lambda text: text.splitlines()[0])
def test_each_identity_example_parses_and_validates(text: str) -> None:
    IdentityConfig.model_validate(tomllib.loads(text))


DIFFERENCES_DOC = DOCS / "differences.md"


def test_the_differences_from_connecting_directly_are_documented_and_linked() -> None:
    text = DIFFERENCES_DOC.read_text()
    assert text.startswith("# Differences from connecting directly\n")
    readme = (DOCS.parent / "README.md").read_text()
    assert "(docs/differences.md)" in readme


def test_the_tls_status_difference_names_the_setting_that_changes_it() -> None:
    text = DIFFERENCES_DOC.read_text()
    assert "## `SHOW STATUS LIKE 'Ssl_%'` describes the proxy→database leg" in text
    # The setting exists under that name, and the configuration reference documents it.
    assert "backend_tls" in ProxyConfig.model_fields and "`backend_tls`" in text
    assert "`backend_tls`" in CONFIGURATION_DOC.read_text()
