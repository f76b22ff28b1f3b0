"""One page of a long list (users, audit events), as the admin pages and the API
show it: which page, how many per page, how many in all."""

from __future__ import annotations

import math
from dataclasses import dataclass

PER_PAGE = 50
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class Page:
    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def paginate(query, page: int, per_page: int = PER_PAGE, *, clamp: bool = False) -> Page:
    """Rows `page` (from 1) of a Peewee query that is already ordered. With `clamp`
    (pages for people), a page past the end, from an old link, shows the last one;
    the API answers it empty, so a client paging until it is empty stops."""
    per_page = min(max(1, per_page), MAX_PER_PAGE)
    total = query.count()
    page = max(1, page)
    if clamp:
        page = min(page, max(1, math.ceil(total / per_page)))
    return Page(list(query.paginate(page, per_page)), page, per_page, total)
