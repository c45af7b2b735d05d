"""Every table of the schema in one `Base.metadata`: import this module before reading the metadata.

Each domain declares its tables in its own `models.py`; a module that only uses one domain's models need
not import this. `tests/test_schema_models.py` compares this metadata with the migrated schema.
"""

from customer_master import models as plumbing
from customer_master.auth import models as auth
from customer_master.customers import models as customers
from customer_master.db.base import Base
from customer_master.detection import models as detection
from customer_master.history import models as history
from customer_master.imports import models as imports
from customer_master.merge import models as merge
from customer_master.webhooks import models as webhooks

metadata = Base.metadata

__all__ = ["auth", "customers", "detection", "history", "imports", "merge", "metadata", "plumbing", "webhooks"]
