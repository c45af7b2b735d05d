import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from customer_master.auth.models import Role, UserStatus
from customer_master.schemas import Email, NotNull, StrictModel

Password = Annotated[str, Field(min_length=12, max_length=256)]
PersonName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class LoginIn(StrictModel):
    org_slug: str = Field(max_length=100)
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class LoginOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserCreate(StrictModel):
    email: Email
    name: PersonName | None = None
    role: Role
    password: Password


class UserPatch(StrictModel):
    name: PersonName | None = None
    role: NotNull[Role] = None
    status: NotNull[UserStatus] = None
    password: NotNull[Password] = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    role: Role
    status: UserStatus
    created_at: datetime
    last_login_at: datetime | None


class ApiTokenCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role


class ApiTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None


class ApiTokenCreated(ApiTokenOut):
    token: str


class MeUser(BaseModel):
    id: uuid.UUID
    email: str
    name: str | None
    role: Role
    org_id: uuid.UUID


class MeToken(BaseModel):
    id: uuid.UUID
    name: str
    role: Role


class MeOrg(BaseModel):
    id: uuid.UUID
    slug: str
    name: str


class MeOut(BaseModel):
    user: MeUser | None
    token: MeToken | None = None
    org: MeOrg
