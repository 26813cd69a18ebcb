"""Credentials for the search engine, read from the environment variables the settings
name: an API key, or a user name and password. Never from flags or files."""

from __future__ import annotations

import os
from base64 import b64encode
from typing import Any

from ..errors import ConfigError
from ..settings import ElasticsearchSettings
from .product import Credentials


def credentials(es: ElasticsearchSettings) -> dict[str, Any]:
    """Read secrets from the environment variables the settings name (never from flags):
    ``{"api_key": ...}``, ``{"basic_auth": (user, password)}`` or ``{}``."""
    api_key = os.environ.get(es.api_key_env) if es.api_key_env else None
    user = os.environ.get(es.username_env) if es.username_env else None
    password = os.environ.get(es.password_env) if es.password_env else None
    if api_key and user:
        raise ConfigError(f"both {es.api_key_env} and {es.username_env} are set: choose one way "
                          "to authenticate to Elasticsearch")
    if user and password is None:
        raise ConfigError(f"{es.username_env} is set but {es.password_env} is not")
    if api_key:
        return {"api_key": api_key}
    if user:
        return {"basic_auth": (user, password)}
    return {}


def credential_names(es: ElasticsearchSettings) -> Credentials:
    """The credential variables of the settings, and which of them are set."""
    found = credentials(es)
    given = (es.api_key_env if "api_key" in found else
             f"{es.username_env}/{es.password_env}" if found else "")
    return Credentials(es.api_key_env, es.username_env, es.password_env, given)


def auth_headers(es: ElasticsearchSettings) -> dict[str, str]:
    """The ``Authorization`` header the credentials make, or none."""
    found = credentials(es)
    if "api_key" in found:
        return {"authorization": f"ApiKey {found['api_key']}"}
    if "basic_auth" in found:
        user, password = found["basic_auth"]
        return {"authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}
    return {}
