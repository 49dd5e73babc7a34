"""Policy documents: the grammar we accept, what we refuse and why, and IAM's evaluation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.identity import PolicyDocument, PolicyError, is_allowed
from tenantproxy.identity.policy import wildcard_pattern

RESOURCE = "arn:aws:rds-db:us-east-1:123456789012:dbuser:prx-1/user7"


def policy(effect: str = "Allow", action: Any = "rds-db:connect", resource: Any = RESOURCE) -> Any:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": effect, "Action": action, "Resource": resource}],
    }


def parse(document: Any) -> PolicyDocument:
    return PolicyDocument.parse(document)


@pytest.mark.parametrize(
    "document",
    [
        policy(),
        json.dumps(policy()),
        {"Statement": {"Effect": "Allow", "Action": "rds-db:connect", "Resource": RESOURCE}},
        {
            "Version": "2008-10-17",
            "Id": "x",
            "Statement": [{"Sid": "One", **policy()["Statement"][0]}],
        },
        policy(action=["rds-db:connect", "sts:*"], resource=[RESOURCE, "*"]),
        policy(action="*", resource="*"),
    ],
)
def test_valid_documents_parse(document: Any) -> None:
    assert parse(document).statements


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "policy is not valid JSON"),
        ("[]", "policy must be a JSON object"),
        ({**policy(), "Version": "2020-01-01"}, "Version must be one of"),
        ({"Version": "2012-10-17"}, "policy has no Statement"),
        ({"Statement": []}, "Statement must not be empty"),
        ({**policy(), "Extra": 1}, "policy: unknown element 'Extra'"),
        ({"Statement": ["x"]}, "Statement[0] must be a JSON object"),
        (policy(effect="Maybe"), "Statement[0].Effect must be Allow or Deny"),
        (policy(effect="allow"), "Statement[0].Effect must be Allow or Deny"),
        (policy(action=[]), "Statement[0].Action must not be empty"),
        (policy(action=["rds-db:connect", 3]), "Statement[0].Action must be a non-empty string"),
        (policy(action="connect"), "Statement[0].Action 'connect' is not service:action or *"),
        (policy(resource="user7"), "Statement[0].Resource 'user7' is not an ARN or *"),
        (policy(resource=None), "Statement[0].Resource must be a non-empty string"),
        ({"Statement": [{"Effect": "Allow", "Resource": "*"}]}, "Statement[0] has no Action"),
        ({"Statement": [{"Effect": "Allow", "Action": "*"}]}, "Statement[0] has no Resource"),
        ({"Statement": [{**policy()["Statement"][0], "Sid": 1}]}, "Statement[0].Sid must be"),
        ({"Statement": [{**policy()["Statement"][0], "Cond": 1}]}, "unknown element 'Cond'"),
    ],
)
def test_malformed_documents_are_rejected_with_a_message_naming_the_element(
    document: Any, message: str
) -> None:
    with pytest.raises(PolicyError, match=None) as caught:
        parse(document)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "element", ["NotAction", "NotResource", "Principal", "NotPrincipal", "Condition"]
)
def test_elements_we_do_not_evaluate_are_refused_not_ignored(element: str) -> None:
    document = policy()
    document["Statement"].append({**document["Statement"][0], element: "*"})
    with pytest.raises(PolicyError, match=rf"^Statement\[1\]\.{element} is not supported$"):
        parse(document)


ALLOW = parse(policy())
ALLOW_ALL_USERS = parse(policy(resource="arn:aws:rds-db:*:*:dbuser:prx-1/*"))
DENY = parse(policy(effect="Deny"))
OTHER = parse(policy(resource=RESOURCE.replace("user7", "user8")))


@pytest.mark.parametrize(
    ("identity", "session", "allowed", "reason"),
    [
        ([ALLOW], None, True, "allowed by identity policy"),
        ([ALLOW_ALL_USERS], ALLOW, True, "allowed by identity policy and session policy"),
        ([ALLOW_ALL_USERS], OTHER, False, "no allow in session policy"),
        ([OTHER], ALLOW, False, "no allow in identity policy"),
        ([], None, False, "no allow in identity policy"),
        ([ALLOW, DENY], None, False, "explicit deny in identity policy"),
        ([ALLOW_ALL_USERS], DENY, False, "explicit deny in session policy"),
        ([DENY], DENY, False, "explicit deny in identity policy"),
        ([ALLOW_ALL_USERS, OTHER], ALLOW, True, "allowed by identity policy and session policy"),
    ],
)
def test_evaluation_needs_an_allow_in_both_and_an_explicit_deny_wins(
    identity: list[PolicyDocument], session: PolicyDocument | None, allowed: bool, reason: str
) -> None:
    decision = is_allowed("rds-db:connect", RESOURCE, identity, session)
    assert (decision.is_allowed, decision.reason) == (allowed, reason)


def test_actions_match_case_insensitively_and_resources_case_sensitively() -> None:
    assert is_allowed("RDS-DB:Connect", RESOURCE, [ALLOW], None).is_allowed
    assert not is_allowed("rds-db:connect", RESOURCE.upper(), [ALLOW], None).is_allowed


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("arn:aws:rds-db:*:*:dbuser:prx-1/*", RESOURCE, True),
        ("arn:aws:rds-db:*", RESOURCE, True),  # * crosses ':' and '/'
        ("arn:aws:rds-db:us-east-1:123456789012:dbuser:prx-1/user?", RESOURCE, True),
        ("arn:aws:rds-db:us-east-1:123456789012:dbuser:prx-1/user??", RESOURCE, False),
        ("arn:aws:rds-db:us-east-1:123456789012:dbuser:prx-1/user", RESOURCE, False),
        ("arn:aws:rds-db:us-east-1:123456789012:dbuser:prx-1.user7", RESOURCE, False),  # no regex
        ("*", RESOURCE, True),
    ],
)
def test_wildcards_follow_iam_semantics(pattern: str, value: str, matches: bool) -> None:
    assert bool(wildcard_pattern(pattern, ignore_case=False).fullmatch(value)) is matches


@given(st.data(), st.text(min_size=0, max_size=40))
def test_a_pattern_made_by_replacing_characters_with_wildcards_matches_the_original(
    data: st.DataObject, text: str
) -> None:
    chars = list(text)
    for i in range(len(chars)):
        chars[i] = data.draw(st.sampled_from([chars[i], chars[i], "?", "*"]))
    # '*' also stands for a run: replace a random slice with one.
    start = data.draw(st.integers(0, len(chars)))
    end = data.draw(st.integers(start, len(chars)))
    chars[start:end] = [data.draw(st.sampled_from(["*", "".join(chars[start:end])]))]
    pattern = "".join(chars)
    assert wildcard_pattern(pattern, ignore_case=False).fullmatch(text)
    assert wildcard_pattern("*" + pattern + "*", ignore_case=False).fullmatch("x" + text + "\n")
