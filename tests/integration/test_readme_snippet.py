"""The README's token-login snippet, run exactly as it is written, against the test stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.tenant_secrets import tokens_required_for

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- token-login-snippet:"


def readme_snippet() -> str:
    text = README.read_text()
    after_marker = text[text.index(MARKER) :]
    found = re.search(r"```python\n(.*?)```", after_marker, re.DOTALL)
    assert found is not None, "the README lost its token-login snippet"
    return found.group(1)


@pytest.fixture
def user7_requires_tokens(stack: Any) -> Iterator[None]:
    with tokens_required_for(stack.outputs, ["user7"]):
        yield


def test_the_readme_snippet_reads_five_rows_through_the_proxy_with_a_token(
    stack, user7_requires_tokens
):
    outputs_file = Path(stack.outputs["StateDir"]) / "outputs.json"
    result = subprocess.run(
        [sys.executable, "-c", readme_snippet()],
        env={**os.environ, "TENANTPROXY_OUTPUTS": str(outputs_file)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = result.stdout.strip().splitlines()
    assert len(rows) == 5
    assert [row.split(",")[0] for row in rows] == [f"({i}" for i in range(1, 6)]
