"""mkdocs hooks: pages that exist on some branches only join the nav when their file is there.

``docs/cells.md`` (how to add a recurrent cell) is listed after the design page when it exists,
so the site builds with ``--strict`` with or without it.
"""
from __future__ import annotations

from pathlib import Path

OPTIONAL_PAGES = [("Cells", "cells.md", "Design")]  # (title, file, insert before this nav title)


def on_config(config, **kwargs):
    nav = config.get("nav")
    if not nav:
        return config
    listed = set(_pages(nav))
    for title, page, before in OPTIONAL_PAGES:
        if page in listed or not (Path(config["docs_dir"]) / page).is_file():
            continue
        at = next((i for i, item in enumerate(nav) if isinstance(item, dict) and before in item), len(nav))
        nav.insert(at, {title: page})
    return config


def _pages(nav):
    """Every file named in a (nested) nav."""
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            yield from _pages(value)
        else:
            yield value
