"""Service settings, read from the environment."""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as `90`, `90s`, `30m`, `24h` or `7d` (no unit: seconds)."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 24h or 7d")
    return timedelta(seconds=int(match[1]) * DURATION_UNITS[match[2]])


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, with defaults for a bare machine."""

    database_url: str = "sqlite:///var/quorum.db"
    scheduler_enabled: bool = True
    lease_seconds: int = 600
    import_chunk_size: int = 2000
    max_import_errors: int = 1000
    expire_interval: int = 30
    aggregate_interval: int = 60
    close_interval: int = 60
    poll_interval: int = 60
    outbox_interval: int = 10
    webhook_max_attempts: int = 10
    # Seconds before a batch's due_at when its webhook vendor is sent `batch.due_soon`.
    due_soon_lead: int = 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Build settings from environment variables (QUORUM_* and DATABASE_URL)."""
        return cls(
            database_url=env.get("DATABASE_URL", cls.database_url),
            scheduler_enabled=_flag(env.get("QUORUM_SCHEDULER", "true")),
            lease_seconds=int(env.get("QUORUM_LEASE_SECONDS", cls.lease_seconds)),
            import_chunk_size=int(env.get("QUORUM_IMPORT_CHUNK_SIZE", cls.import_chunk_size)),
            max_import_errors=int(env.get("QUORUM_MAX_IMPORT_ERRORS", cls.max_import_errors)),
            expire_interval=int(env.get("QUORUM_EXPIRE_INTERVAL", cls.expire_interval)),
            aggregate_interval=int(env.get("QUORUM_AGGREGATE_INTERVAL", cls.aggregate_interval)),
            close_interval=int(env.get("QUORUM_CLOSE_INTERVAL", cls.close_interval)),
            poll_interval=int(env.get("QUORUM_POLL_INTERVAL", cls.poll_interval)),
            outbox_interval=int(env.get("QUORUM_OUTBOX_INTERVAL", cls.outbox_interval)),
            webhook_max_attempts=int(
                env.get("QUORUM_WEBHOOK_MAX_ATTEMPTS", cls.webhook_max_attempts)
            ),
            due_soon_lead=int(
                parse_duration(
                    env.get("QUORUM_DUE_SOON_LEAD", str(cls.due_soon_lead))
                ).total_seconds()
            ),
        )
