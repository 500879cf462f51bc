"""Checks that connectors' `validate_config` share: errors naming `config.<key>`, no
credentials in a stored config, http(s) URLs, AWS region names."""

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from connectors.base import ConnectorConfigError

CREDENTIAL_LOOKING = re.compile(r"secret|password|token|access_?key|credential|session", re.I)
AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


def invalid(key: str, problem: str) -> ConnectorConfigError:
    """The error for a bad setting, naming it as `config.<key>`."""
    return ConnectorConfigError(f"{key} {problem}", details={f"config.{key}": [problem]})


def refuse_credentials(keys: Iterable[str], source: str) -> None:
    """Refuse the first key that looks like a credential; `source` says where they come from.

    A workforce's config is stored and shown to ops, so a secret must never be in it.
    """
    for key in keys:
        if CREDENTIAL_LOOKING.search(key):
            raise invalid(
                key, f"looks like a credential: {source}, never from the workforce config"
            )


def check_http_url(config: Mapping[str, Any], key: str) -> SplitResult | None:
    """Refuse a setting that is not an http(s) URL with a host; return its parts, if set."""
    url = config.get(key)
    if url is None:
        return None
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(key, "must be an http or https URL")
    return parts


def check_region(config: Mapping[str, Any], key: str) -> None:
    """Refuse a setting that is not an AWS region name."""
    region = config.get(key)
    if region is not None and not (isinstance(region, str) and AWS_REGION.fullmatch(region)):
        raise invalid(key, "must be an AWS region name such as us-east-1")
