"""`hookbot audit show`: one delivery's audit record read back from where the audit plugin keeps it.

The [audit] section is checked by the plugin's own set-up, exactly as at start, so a record is read from the
destination a running server writes to; the AWS clients are imported only when the command runs.
"""

from __future__ import annotations

import sys

from bot.config_schema import ConfigError
from bot.plugin import Setup
from bot.settings import Settings


def audit_show(settings: Settings, delivery_id: str) -> int:
    """Print one audit record as JSON; the [audit] section is checked by the plugin's own set-up."""
    import orjson

    import handlers.audit
    from bot.aws import AwsClients
    from bot.plugins import set_up
    from handlers.audit.records import read_record

    plugin = set_up("audit", handlers.audit, Setup("audit", settings.plugin_sections.get("audit", {}), {}))
    config = plugin.config if plugin else None  # None: installed but not set up
    if config is None or config.destination is None:
        raise ConfigError('[audit] destination is not set; e.g. destination = "dynamodb://hookbot-audit"')
    record = read_record(config.destination, AwsClients(), delivery_id)
    if record is None:
        print(f"hookbot: no audit record of delivery {delivery_id} in {config.destination}", file=sys.stderr)
        return 1
    print(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode())
    return 0
