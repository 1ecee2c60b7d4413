"""Settings: defaults from config/defaults.toml, overridden by the environment.

`DATABASE_URL`, `REDIS_URL`, `SECRET_KEY` and `SECRET_KEY_FALLBACKS` are read as they are;
every other key `foo` is read from `COUNTERSIGN_FOO`. A value that does not parse or is
out of range raises SettingsError naming the variable, so a wrong setting stops the app
at start.

One module per step: values.py parses each setting (PARSERS lists them all), checks.py
checks the settings that go together, loading.py has the typed `Settings` and loads
them. Every public name is re-exported here: `from review.settings import X`.
"""

from review.settings.checks import SLACK_KEYS
from review.settings.loading import DEFAULTS_FILE, PROJECT_ROOT, Settings, load_settings
from review.settings.values import (
    PARSERS,
    UNPREFIXED,
    SettingsError,
    env_name,
    is_https_or_loopback,
    parse_flood,
)

__all__ = [
    "DEFAULTS_FILE",
    "PARSERS",
    "PROJECT_ROOT",
    "SLACK_KEYS",
    "UNPREFIXED",
    "Settings",
    "SettingsError",
    "env_name",
    "is_https_or_loopback",
    "load_settings",
    "parse_flood",
]
