"""The import report (API.md §6) and the import-run record as the API shows them."""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class RowError(BaseModel):
    row: int
    field: str | None
    value: str | None
    error: str


class ImportWarning(BaseModel):
    code: str
    rows: list[int]
    warning: str


class ImportReport(BaseModel):
    rows: int
    imported: int
    updated: int
    unchanged: int
    failed: int
    contacts_created: int
    contacts_updated: int
    errors: list[RowError]
    warnings: list[ImportWarning]
    encoding: Literal["utf-8", "windows-1252"]
    delimiter: str
    dry_run: bool
    import_id: uuid.UUID = Field(description="The `/imports` record of this import; its history entries name it")

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ImportRunOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    source: Literal["api", "cli"]
    user_email: str | None
    token_name: str | None
    file_name: str | None
    dry_run: bool
    rows: int
    imported: int
    updated: int
    unchanged: int
    failed: int
