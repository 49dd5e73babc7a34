"""docs/configuration.md keeps up with the config models, and its examples are valid."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from tenantproxy.config import EndpointConfig, FileSecretStoreConfig, ProxyConfig, TargetConfig
from tenantproxy.stack.settings import StackSettings

CONFIGURATION_DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
MODELS: list[type[BaseModel]] = [
    ProxyConfig,
    EndpointConfig,
    TargetConfig,
    FileSecretStoreConfig,
    StackSettings,
]
FENCED_TOML = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_text() -> str:
    return CONFIGURATION_DOC.read_text()


def toml_examples() -> list[str]:
    return FENCED_TOML.findall(doc_text())


@pytest.mark.parametrize(
    ("model", "field"),
    [(model, field) for model in MODELS for field in model.model_fields],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_every_setting_is_in_the_configuration_reference(
    model: type[BaseModel], field: str
) -> None:
    assert f"`{field}`" in doc_text(), f"{model.__name__}.{field} is not in {CONFIGURATION_DOC}"


def test_the_reference_has_a_proxy_example_and_a_stack_example() -> None:
    kinds = sorted(example_kind(tomllib.loads(text)) for text in toml_examples())
    assert kinds.count("proxy") >= 1 and kinds.count("stack") >= 1, kinds


def example_kind(document: dict[str, object]) -> str:
    # A proxy config always has endpoints; a stack file never does.
    return "proxy" if "endpoints" in document else "stack"


@pytest.mark.parametrize("text", toml_examples(), ids=lambda text: text.splitlines()[0])
def test_each_toml_example_parses_and_validates(text: str) -> None:
    # Validation does not open the paths, so the examples' paths need not exist here.
    document = tomllib.loads(text)
    if example_kind(document) == "proxy":
        ProxyConfig.model_validate(document)
    else:
        StackSettings.model_validate(document)
