"""What differs between the SQL databases an index can live in, in one object.

Every statement is written once, with ``?`` placeholders; a dialect supplies the few
fragments that cannot be written alike (the DDL's primary key and byte-ordered text types,
and matching a column against a list passed as one parameter).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL fragments of one database."""

    name: str
    pk: str
    """The DDL of an integer primary key that numbers new rows."""
    text: str
    """The DDL of text compared by range and by LIKE prefix in byte (code point) order."""
    value_list_sql: str
    """``{column}`` matched against a list passed as one parameter (``?``)."""
    list_param: Callable[[Sequence[object]], object]
    """The parameter of :attr:`value_list_sql` for a list of values."""

    def value_list(self, column: str) -> str:
        """SQL true when ``column`` is one of the values of one list parameter (as many as
        the identifier rules allow, not bounded by a variable limit)."""
        return self.value_list_sql.format(column=column)

    def ddl(self, statement: str) -> str:
        """A schema statement with this dialect's types."""
        return statement.replace("{pk}", self.pk).replace("{text}", self.text)


SQLITE = Dialect(
    name="sqlite",
    pk="INTEGER PRIMARY KEY",
    text="TEXT",
    value_list_sql="{column} IN (SELECT value FROM json_each(?))",
    list_param=lambda values: json.dumps(list(values)),
)
