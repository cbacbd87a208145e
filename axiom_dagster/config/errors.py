"""What the configuration loader and light readers of the configuration file share, without
pydantic (commands such as `axiom sql` read one setting and must start fast)."""
from __future__ import annotations

import re

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names file, line and field."""
