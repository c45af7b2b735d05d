"""Settings, read from the environment (the same for the server and every CLI command)."""

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CM_", extra="ignore")

    # A plain libpq URL; without it an embedded PostgreSQL is started in `data_dir`.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Path(".customer-master")
    # Without it, embedded mode generates one secret once and keeps it in the data directory.
    jwt_secret: str | None = None
    token_ttl_s: int = Field(default=3600, ge=1)
    max_upload_mb: int = Field(default=100, ge=1)
    # A CSV line longer than this (in characters) rejects the import file as not being CSV.
    import_max_line_length: int = Field(default=1_048_576, ge=1024)
    db_pool_size: int = Field(default=10, ge=1)
    # The event feed serves this many seconds back (API.md §11); history itself is kept for good.
    event_retention_s: int = Field(default=7_776_000, ge=1)
    # Webhooks (API.md §11), all in seconds (fractions allowed, so that tests run them in seconds):
    # the pauses between the attempts at one event (the last repeats), how long after an event's first
    # failed attempt an endpoint gives up (FAILING), how long a rotated-out secret still signs.
    webhook_retry_s: Annotated[tuple[float, ...], NoDecode] = (5, 30, 120, 600, 3600, 10800)
    webhook_give_up_s: float = Field(default=259_200, ge=0)
    webhook_secret_overlap_s: float = Field(default=86_400, ge=0)
    # Also http and https to loopback addresses (local receivers, tests); never anything else non-global.
    webhook_allow_loopback: bool = False

    @field_validator("webhook_retry_s", mode="before")
    @classmethod
    def _comma_separated_pauses(cls, value: Any) -> Any:
        """`CM_WEBHOOK_RETRY_S=5,30,120`: at least one pause, none negative."""
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if not value or any(float(pause) < 0 for pause in value):
            raise ValueError("comma-separated seconds, at least one, none negative (e.g. 5,30,120)")
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()


def resolve_jwt_secret(settings: Settings) -> str:
    """`CM_JWT_SECRET`, else (embedded mode) a secret generated once and kept in the data directory."""
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.database_url:
        raise RuntimeError("Set CM_JWT_SECRET: with DATABASE_URL every server process must share one secret")
    path = settings.data_dir / "jwt_secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()
