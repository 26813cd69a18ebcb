"""The credentials of a Spark run: carried to the executors, kept out of Spark's logs.

Secrets are never settings: ``*_env`` settings name the environment variables that hold
them (``[elasticsearch] api_key_env`` ...), and a slice reads them where it runs. On a
cluster that is an executor, whose environment is not the driver's. So each such
variable set on the driver becomes ``spark.executorEnv.NAME``, unless the user passed
that property already (a cluster's own secret mechanism can set it).

Spark writes its properties into the event log, the web UI and some log lines, and hides
the values of keys matching ``spark.redaction.regex``. Its default,
``(?i)secret|password|token|access[.]?key``, covers ``HBASE2ES_ES_PASSWORD`` but not
``HBASE2ES_ES_API_KEY``, nor a name chosen in the config; so the regex is extended with
every ``*_env`` name. And pyspark puts the properties it starts its JVM with on that
JVM's command line, which any user of the machine can read (``ps``): these properties
are set only after the JVM is up (``split_secrets``).
"""

from __future__ import annotations

import dataclasses
import re

# spark.redaction.regex when the user sets none (Spark 3.x and 4.x).
SPARK_REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key"
EXECUTOR_ENV = "spark.executorEnv."


def secret_env_names(settings) -> list[str]:
    """The environment variables the settings read secrets from: every ``*_env`` value."""
    names: list[str] = []
    for part in dataclasses.fields(settings):
        section = getattr(settings, part.name)
        if not dataclasses.is_dataclass(section):
            continue
        for item in dataclasses.fields(section):
            value = getattr(section, item.name)
            if item.name.endswith("_env") and isinstance(value, str) and value:
                names.append(value)
    return names


def credential_conf(settings, conf: dict[str, str], environ) -> dict[str, str]:
    """The properties to add to ``conf`` (the user's): ``spark.executorEnv.NAME`` for each
    secret variable set in ``environ`` and not given, and ``spark.redaction.regex`` (the
    user's or Spark's default) extended with the names of all of them."""
    names = secret_env_names(settings)
    out = {f"{EXECUTOR_ENV}{name}": environ[name] for name in names
           if environ.get(name) is not None and f"{EXECUTOR_ENV}{name}" not in conf}
    regex = conf.get("spark.redaction.regex") or SPARK_REDACTION_REGEX
    out["spark.redaction.regex"] = "|".join([regex, *(re.escape(name) for name in names)])
    return out


def split_secrets(conf: dict[str, str], settings) -> tuple[dict[str, str], dict[str, str]]:
    """``conf`` as (properties the JVM may start with, properties to set once it runs):
    the second holds every key Spark would redact, as far as Python can tell."""
    names = {f"{EXECUTOR_ENV}{name}" for name in secret_env_names(settings)}
    try:
        user = re.compile(conf.get("spark.redaction.regex") or SPARK_REDACTION_REGEX)
    except re.error:  # a Java-only regex: Spark's default still applies here
        user = re.compile(SPARK_REDACTION_REGEX)
    default = re.compile(SPARK_REDACTION_REGEX)

    def secret(key: str, value: str) -> bool:
        # Spark redacts a property whose key or value matches.
        return key in names or any(r.search(key) or r.search(value) for r in (user, default))

    public = {k: v for k, v in conf.items() if k == "spark.redaction.regex" or not secret(k, v)}
    return public, {k: v for k, v in conf.items() if k not in public}
